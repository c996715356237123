#include "plots/heatmap_plot.h"

#include "plots/qcustomplot_include.h"

#include <QImage>
#include <QMenu>
#include <QPainter>
#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace mla {

// Outlines the kept cells (and separates KV heads) in one paint call: thousands of QCPItemRects would be slow. It
// sits alone on a buffered layer, so a settings move that changes only the kept pairs repaints this layer, not the
// colour map and the axes (HeatmapPlot::updateKept). The outlines are drawn into an image cached until the kept
// cells, the axis rect or its ranges change; when cells are a few pixels wide (the all-heads view: 32 x 2048 cells)
// the image is written pixel by pixel, because stroking thousands of sub-pixel rectangles with wide pens takes tens
// of milliseconds (issue 19).
class KeptCellsLayer : public QCPLayerable {
public:
    KeptCellsLayer(QCustomPlot* plot, QCPAxisRect* rect) : QCPLayerable(plot, PlotWidget::highlightLayer()), m_rect(rect) {}

    const view::ScoreGrid* grid = nullptr;
    QColor separator;
    void invalidate() { m_cache = QImage(); }

protected:
    void applyDefaultAntialiasingHint(QCPPainter* painter) const override { painter->setAntialiasing(false); }
    QRect clipRect() const override { return m_rect->rect(); }

    void draw(QCPPainter* painter) override
    {
        if (!grid || grid->rows == 0)
            return;
        QCPAxis* x = m_rect->axis(QCPAxis::atBottom);
        QCPAxis* y = m_rect->axis(QCPAxis::atLeft);
        const QRect area = m_rect->rect();
        const Key key{area, x->range().lower, x->range().upper, y->range().lower, y->range().upper, separator.rgba()};
        // Vector output (PDF, SVG export) gets the strokes; pixels (the screen's buffers, PNG) the cached image.
        const int device = painter->device() ? painter->device()->devType() : 0;
        const bool raster = (device == QInternal::Image || device == QInternal::Pixmap) && !painter->modes().testFlag(QCPPainter::pmVectorized);
        if (!raster) {
            drawStrokes(painter, x, y);
            return;
        }
        if (m_cache.isNull() || !(key == m_key)) {
            m_key = key;
            m_cache = QImage(area.size(), QImage::Format_ARGB32_Premultiplied);
            m_cache.fill(Qt::transparent);
            if (cellPixels(x, y).width() >= 4.0) {
                QCPPainter p(&m_cache);
                p.setAntialiasing(false);
                p.translate(-area.topLeft());
                drawStrokes(&p, x, y);
            } else {
                drawDense(x, y, area);
            }
        }
        // QCPPainter shifts rasterised output by half a pixel while antialiasing is off; the image is pixel-aligned.
        const bool antialiased = painter->antialiasing();
        painter->setAntialiasing(true);
        painter->drawImage(area.topLeft(), m_cache);
        painter->setAntialiasing(antialiased);
    }

private:
    struct Key {
        QRect area;
        double x0, x1, y0, y1;
        QRgb separator;
        bool operator==(const Key& o) const
        {
            return area == o.area && x0 == o.x0 && x1 == o.x1 && y0 == o.y0 && y1 == o.y1 && separator == o.separator;
        }
    };

    QRectF cellRect(QCPAxis* x, QCPAxis* y, std::int64_t row, std::int64_t col) const
    {
        const double x0 = x->coordToPixel(static_cast<double>(col) - 0.5);
        const double x1 = x->coordToPixel(static_cast<double>(col) + 0.5);
        const double y0 = y->coordToPixel(static_cast<double>(row) - 0.5);
        const double y1 = y->coordToPixel(static_cast<double>(row) + 0.5);
        return QRectF(QPointF(std::min(x0, x1), std::min(y0, y1)), QPointF(std::max(x0, x1), std::max(y0, y1)));
    }
    QSizeF cellPixels(QCPAxis* x, QCPAxis* y) const { return cellRect(x, y, 0, 0).size(); }

    void drawSeparators(QPainter* painter, QCPAxis* x) const
    {
        if (grid->heads <= 1)
            return;
        painter->setPen(QPen(separator, 2.0));
        for (std::int64_t h = 1; h < grid->heads; ++h) {
            const double px = x->coordToPixel(static_cast<double>(h * grid->pairsPerHead) - 0.5);
            painter->drawLine(QLineF(px, m_rect->top(), px, m_rect->bottom()));
        }
    }

    // Each kept cell outlined: a dark 3 px frame with a white 1.5 px frame inside it.
    void drawStrokes(QPainter* painter, QCPAxis* x, QCPAxis* y) const
    {
        const QSizeF one = cellPixels(x, y);
        const double inset = std::min(one.width(), one.height()) > 8 ? 1.5 : 0.5;
        QVector<QRectF> rects;
        for (std::int64_t r = 0; r < grid->rows; ++r) {
            for (std::int64_t c = 0; c < grid->columns; ++c) {
                if (grid->isKept(r, c))
                    rects.append(cellRect(x, y, r, c).adjusted(inset, inset, -inset, -inset));
            }
        }
        painter->setBrush(Qt::NoBrush);
        painter->setPen(QPen(QColor(0, 0, 0, 200), 3.0));
        painter->drawRects(rects.constData(), static_cast<int>(rects.size()));
        painter->setPen(QPen(QColor(255, 255, 255), 1.5));
        painter->drawRects(rects.constData(), static_cast<int>(rects.size()));
        drawSeparators(painter, x);
    }

    // The same outlines for cells a few pixels wide, written into the image: each run of kept cells in a row gets a
    // dark frame (1 px, 2 px where the run is wider than 6 px) around a white one (the cells' own pixels), so that a
    // kept pair stays visible as a bright mark at any width.
    void drawDense(QCPAxis* x, QCPAxis* y, const QRect& area)
    {
        const int w = m_cache.width(), h = m_cache.height();
        const QRgb dark = qPremultiply(qRgba(0, 0, 0, 200));
        const QRgb white = qRgba(255, 255, 255, 255);
        auto fill = [&](int x0, int y0, int x1, int y1, QRgb colour) { // [x0, x1) x [y0, y1), clipped
            x0 = std::max(x0, 0);
            y0 = std::max(y0, 0);
            x1 = std::min(x1, w);
            y1 = std::min(y1, h);
            for (int yy = y0; yy < y1; ++yy) {
                auto* line = reinterpret_cast<QRgb*>(m_cache.scanLine(yy));
                std::fill(line + x0, line + x1, colour);
            }
        };
        for (std::int64_t r = 0; r < grid->rows; ++r) {
            for (std::int64_t c = 0; c < grid->columns; ++c) {
                if (!grid->isKept(r, c))
                    continue;
                std::int64_t end = c + 1;
                while (end < grid->columns && grid->isKept(r, end) && end % grid->pairsPerHead != 0)
                    ++end; // a run of kept cells, within one head
                const QRectF first = cellRect(x, y, r, c), last = cellRect(x, y, r, end - 1);
                const int x0 = static_cast<int>(std::floor(first.left())) - area.left();
                const int x1 = std::max(x0 + 1, static_cast<int>(std::ceil(last.right())) - area.left());
                const int y0 = static_cast<int>(std::floor(first.top())) - area.top();
                const int y1 = std::max(y0 + 1, static_cast<int>(std::ceil(first.bottom())) - area.top());
                const int frame = x1 - x0 > 6 ? 2 : 1;
                fill(x0 - frame, y0, x1 + frame, y1, dark);
                fill(x0, y0 + 1, x1, y1 - 1, white);
                c = end - 1;
            }
        }
        QPainter p(&m_cache);
        p.translate(-area.topLeft());
        drawSeparators(&p, x);
    }

    QCPAxisRect* m_rect;
    QImage m_cache;
    Key m_key{};
};

namespace {

QCPColorGradient viridis()
{
    QCPColorGradient g;
    g.clearColorStops();
    g.setColorStopAt(0.0, QColor(0x44, 0x01, 0x54));
    g.setColorStopAt(0.25, QColor(0x3b, 0x52, 0x8b));
    g.setColorStopAt(0.5, QColor(0x21, 0x91, 0x8c));
    g.setColorStopAt(0.75, QColor(0x5e, 0xc9, 0x62));
    g.setColorStopAt(1.0, QColor(0xfd, 0xe7, 0x25));
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    return g;
}

} // namespace

HeatmapPlot::HeatmapPlot(QWidget* parent) : PlotWidget(parent)
{
    setTitle(tr("RoPE contribution"));
    QCustomPlot* p = plot();
    QCPAxisRect* rect = p->axisRect();
    m_map = new QCPColorMap(p->xAxis, p->yAxis);
    m_map->setInterpolate(false);
    // The data range gives the centres of the outer cells: cell (r, c) covers r ± 0.5, c ± 0.5, where the ticks and
    // the kept-pair outlines are (a tight boundary would squeeze the cells by half a cell at each edge).
    m_map->setTightBoundary(false);
    m_scale = new QCPColorScale(p);
    p->plotLayout()->addElement(0, 1, m_scale);
    m_scale->setType(QCPAxis::atRight);
    m_scale->setBarWidth(14);
    m_map->setColorScale(m_scale);
    m_scale->setGradient(viridis()); // after linking: the scale's gradient is the one the map uses
    auto* margins = new QCPMarginGroup(p);
    rect->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
    m_scale->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
    p->yAxis->setRangeReversed(true);
    p->yAxis->setLabel(tr("layer"));
    p->xAxis->setLabel(tr("frequency pair j (0 rotates fastest)"));
    p->xAxis2->setVisible(true);
    p->xAxis2->setLabel(tr("wavelength 2π/w_j (tokens)"));
    p->xAxis->grid()->setVisible(false);
    p->yAxis->grid()->setVisible(false);
    m_kept = new KeptCellsLayer(p, rect);
    m_kept->grid = &m_grid;
    // Its own paint buffer: a change of the kept pairs repaints the outlines only (updateKept).
    p->layer(highlightLayer())->setMode(QCPLayer::lmBuffered);
    p->setMouseTracking(true);
    p->installEventFilter(this);
    applyPalette();
}

void HeatmapPlot::applyPalette()
{
    PlotWidget::applyPalette();
    if (!m_scale)
        return;
    styleAxisRect(m_scale->axis()->axisRect());
    // The colour bar paints its gradient and then its axis rect, whose background would cover the gradient.
    m_scale->axis()->axisRect()->setBackground(Qt::NoBrush);
    QCPAxis* a = m_scale->axis();
    a->setBasePen(QPen(foreground()));
    a->setTickPen(QPen(foreground()));
    a->setSubTickPen(QPen(foreground()));
    a->setTickLabelColor(foreground());
    a->setLabelColor(foreground());
    m_kept->separator = foreground();
}

void HeatmapPlot::setPlaceholder(const QString& text)
{
    m_placeholder = text;
    if (m_grid.rows == 0 || m_grid.columns == 0)
        setEmptyMessage(text.isEmpty() ? tr("No scores to show") : text);
}

void HeatmapPlot::clear()
{
    m_grid = view::ScoreGrid();
    m_frequencies.clear();
    rebuild();
}

void HeatmapPlot::setGrid(const view::ScoreGrid& grid, const std::vector<view::PairFrequency>& frequencies, const QString& measureName)
{
    m_grid = grid;
    m_frequencies = frequencies;
    m_measure = measureName;
    rebuild();
}

void HeatmapPlot::updateKept(const std::vector<LayerPairSelection>& selections)
{
    view::markKept(m_grid, selections);
    m_kept->invalidate();
    // Only the outline layer: the colour map and the axes have not changed (a full replot of the all-heads view took
    // ~40 ms, issue 19). Falls back to a full replot when the plot's buffers need one anyway.
    plot()->layer(highlightLayer())->replot();
}

void HeatmapPlot::setLogScale(bool on)
{
    if (m_log == on)
        return;
    m_log = on;
    rebuild();
    Q_EMIT logScaleChanged(on);
}

void HeatmapPlot::rebuild()
{
    QCustomPlot* p = plot();
    const view::ScoreGrid& g = m_grid;
    m_kept->invalidate();
    m_map->data()->clear();
    if (g.rows == 0 || g.columns == 0) {
        // Nothing of the last grid stays: not its axes' layer and pair ticks, not its outlines.
        setEmptyMessage(m_placeholder.isEmpty() ? tr("No scores to show") : m_placeholder);
        requestReplot();
        return;
    }
    setEmptyMessage(QString());
    m_map->data()->setSize(static_cast<int>(g.columns), static_cast<int>(g.rows));
    m_map->data()->setRange(QCPRange(0, static_cast<double>(g.columns - 1)), QCPRange(0, static_cast<double>(g.rows - 1)));
    const double floor = g.minPositive > 0 ? g.minPositive : 1e-12;
    for (std::int64_t r = 0; r < g.rows; ++r) {
        for (std::int64_t c = 0; c < g.columns; ++c) {
            const double v = g.value(r, c);
            m_map->data()->setCell(static_cast<int>(c), static_cast<int>(r), m_log ? std::max(v, floor) : v);
        }
    }
    const QCPAxis::ScaleType type = m_log ? QCPAxis::stLogarithmic : QCPAxis::stLinear;
    m_scale->setDataScaleType(type);
    m_map->setDataScaleType(type);
    if (m_log)
        m_scale->axis()->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else
        m_scale->axis()->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    const double top = g.maximum > 0 ? g.maximum : 1.0;
    m_map->setDataRange(m_log ? QCPRange(floor, std::max(top, floor * 10)) : QCPRange(0.0, top));
    m_scale->axis()->setLabel(m_measure);

    p->xAxis->setRange(-0.5, static_cast<double>(g.columns) - 0.5);
    p->yAxis->setRange(-0.5, static_cast<double>(g.rows) - 0.5);
    p->xAxis2->setRange(p->xAxis->range());

    // Bottom: pair indices (per head, or head names when every head is shown); top: wavelengths of some pairs.
    auto bottom = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    auto top2 = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    const std::int64_t step = std::max<std::int64_t>(1, g.pairsPerHead / 8);
    if (g.heads > 1) {
        for (std::int64_t h = 0; h < g.heads; ++h)
            bottom->addTick(static_cast<double>(h * g.pairsPerHead) + static_cast<double>(g.pairsPerHead - 1) / 2.0,
                            tr("head %1").arg(g.firstHead + h));
        p->xAxis->setLabel(tr("KV head (frequency pairs j = 0 … %1 within each)").arg(g.pairsPerHead - 1));
    } else {
        for (std::int64_t j = 0; j < g.pairsPerHead; j += step)
            bottom->addTick(static_cast<double>(j), QString::number(j));
        p->xAxis->setLabel(tr("frequency pair j of KV head %1 (0 rotates fastest)").arg(g.firstHead));
    }
    const std::int64_t topStep = g.heads > 1 ? g.pairsPerHead : std::max<std::int64_t>(1, g.pairsPerHead / 6);
    for (std::int64_t c = 0; c < g.columns; c += topStep) {
        const std::size_t j = static_cast<std::size_t>(g.pairOfColumn(c));
        if (j < m_frequencies.size()) {
            const double w = m_frequencies[j].wavelength;
            top2->addTick(static_cast<double>(c), w >= 1e4 ? QString::number(w, 'e', 1) : QString::number(w, 'f', w < 10 ? 1 : 0));
        }
    }
    p->xAxis->setTicker(bottom);
    p->xAxis2->setTicker(top2);
    auto left = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    const std::int64_t rowStep = std::max<std::int64_t>(1, g.rows / 16);
    for (std::int64_t r = 0; r < g.rows; r += rowStep)
        left->addTick(static_cast<double>(r), QString::number(r));
    p->yAxis->setTicker(left);
    requestReplot();
}

std::pair<std::int64_t, std::int64_t> HeatmapPlot::cellAt(const QPoint& pos) const
{
    QCustomPlot* p = plot();
    if (m_grid.rows == 0 || !p->axisRect()->rect().contains(pos))
        return {-1, -1};
    const auto col = static_cast<std::int64_t>(std::lround(p->xAxis->pixelToCoord(pos.x())));
    const auto row = static_cast<std::int64_t>(std::lround(p->yAxis->pixelToCoord(pos.y())));
    if (row < 0 || row >= m_grid.rows || col < 0 || col >= m_grid.columns)
        return {-1, -1};
    return {row, col};
}

QString HeatmapPlot::cellText(std::int64_t row, std::int64_t column) const
{
    if (row < 0 || row >= m_grid.rows || column < 0 || column >= m_grid.columns)
        return QString();
    const std::int64_t head = m_grid.headOfColumn(column);
    const std::int64_t j = m_grid.pairOfColumn(column);
    QString text = tr("<b>layer %1 · KV head %2 · pair %3</b> (dims %3, %4)").arg(row).arg(head).arg(j).arg(j + m_grid.pairsPerHead);
    text += QStringLiteral("<br>") + tr("%1: %2").arg(m_measure, QString::number(m_grid.value(row, column), 'g', 4));
    text += QStringLiteral("<br>")
        + (m_grid.isKept(row, column) ? tr("keeps its rotation (outlined)") : tr("loses its rotation: position-free, compressed"));
    if (static_cast<std::size_t>(j) < m_frequencies.size()) {
        const auto& f = m_frequencies[static_cast<std::size_t>(j)];
        text += QStringLiteral("<br>") + tr("frequency w<sub>%1</sub> = %2 rad/token").arg(j).arg(f.frequency, 0, 'g', 4);
        text += QStringLiteral("<br>") + tr("wavelength 2π/w = %1 tokens").arg(f.wavelength, 0, 'g', 5);
    }
    return text;
}

bool HeatmapPlot::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == plot() && event->type() == QEvent::MouseMove) {
        const auto* me = static_cast<QMouseEvent*>(event);
        const auto [row, col] = cellAt(me->position().toPoint());
        if (row >= 0) {
            QToolTip::showText(me->globalPosition().toPoint(), cellText(row, col), plot());
            Q_EMIT cellHovered(row, m_grid.headOfColumn(col), m_grid.pairOfColumn(col));
        } else {
            QToolTip::hideText();
        }
    }
    return PlotWidget::eventFilter(watched, event);
}

void HeatmapPlot::addContextActions(QMenu* menu)
{
    QAction* log = menu->addAction(tr("Logarithmic colour scale"));
    log->setCheckable(true);
    log->setChecked(m_log);
    connect(log, &QAction::toggled, this, &HeatmapPlot::setLogScale);
}

QString HeatmapPlot::csv() const
{
    if (m_grid.rows == 0)
        return QString();
    QString out = QStringLiteral("layer,kv_head,pair,wavelength_tokens,%1,kept\n").arg(m_measure.isEmpty() ? QStringLiteral("value") : QString(m_measure).replace(QLatin1Char(','), QLatin1Char(';')));
    for (std::int64_t r = 0; r < m_grid.rows; ++r) {
        for (std::int64_t c = 0; c < m_grid.columns; ++c) {
            const std::int64_t j = m_grid.pairOfColumn(c);
            const double w = static_cast<std::size_t>(j) < m_frequencies.size() ? m_frequencies[static_cast<std::size_t>(j)].wavelength : 0.0;
            out += QStringLiteral("%1,%2,%3,%4,%5,%6\n")
                       .arg(r)
                       .arg(m_grid.headOfColumn(c))
                       .arg(j)
                       .arg(w, 0, 'g', 8)
                       .arg(m_grid.value(r, c), 0, 'g', 10)
                       .arg(m_grid.isKept(r, c) ? 1 : 0);
        }
    }
    return out;
}

} // namespace mla
