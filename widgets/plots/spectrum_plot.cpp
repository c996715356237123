#include "plots/spectrum_plot.h"

#include "plots/qcustomplot_include.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

QColor ramp(double t)
{
    // Viridis, as in the heatmap, so a layer has one colour everywhere.
    static QCPColorGradient g = [] {
        QCPColorGradient v;
        v.clearColorStops();
        v.setColorStopAt(0.0, QColor(0x44, 0x01, 0x54));
        v.setColorStopAt(0.25, QColor(0x3b, 0x52, 0x8b));
        v.setColorStopAt(0.5, QColor(0x21, 0x91, 0x8c));
        v.setColorStopAt(0.75, QColor(0x5e, 0xc9, 0x62));
        v.setColorStopAt(1.0, QColor(0xe0, 0xc8, 0x10));
        return v;
    }();
    return QColor::fromRgb(g.color(std::clamp(t, 0.0, 1.0), QCPRange(0.0, 1.0)));
}

} // namespace

SpectrumPlot::SpectrumPlot(QWidget* parent) : PlotWidget(parent)
{
    setTitle(tr("Key-value spectra"));
    QCustomPlot* p = plot();
    m_top = p->axisRect();
    m_bottom = new QCPAxisRect(p);
    p->plotLayout()->addElement(1, 0, m_bottom);
    p->plotLayout()->setRowStretchFactor(0, 3);
    p->plotLayout()->setRowStretchFactor(1, 2);
    auto* margins = new QCPMarginGroup(p);
    m_top->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    m_bottom->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    for (QCPAxis* a : m_bottom->axes())
        a->setLayer(QStringLiteral("axes"));
    for (QCPGrid* g : {m_bottom->axis(QCPAxis::atBottom)->grid(), m_bottom->axis(QCPAxis::atLeft)->grid()})
        g->setLayer(QStringLiteral("grid"));

    QCPAxis* sy = m_top->axis(QCPAxis::atLeft);
    sy->setScaleType(QCPAxis::stLogarithmic);
    sy->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    sy->setNumberFormat(QStringLiteral("eb"));
    sy->setNumberPrecision(0);
    m_top->axis(QCPAxis::atBottom)->setTickLabels(false);
    QCPAxis* ey = m_bottom->axis(QCPAxis::atLeft);
    ey->setRange(0, 100);
    ey->setLabel(tr("energy kept (%)"));
    m_bottom->axis(QCPAxis::atBottom)->setLabel(tr("rank k (latent dimensions on this side)"));
    connect(m_bottom->axis(QCPAxis::atBottom), qOverload<const QCPRange&>(&QCPAxis::rangeChanged), m_top->axis(QCPAxis::atBottom),
            qOverload<const QCPRange&>(&QCPAxis::setRange));

    m_cursorTop = new QCPItemStraightLine(p);
    m_cursorBottom = new QCPItemStraightLine(p);
    m_cursorLabel = new QCPItemText(p);
    for (auto* line : {m_cursorTop, m_cursorBottom}) {
        QCPAxisRect* r = line == m_cursorTop ? m_top : m_bottom;
        line->setClipAxisRect(r);
        for (QCPItemPosition* pos : {line->point1, line->point2}) {
            pos->setAxes(r->axis(QCPAxis::atBottom), r->axis(QCPAxis::atLeft));
            pos->setAxisRect(r);
            pos->setTypeX(QCPItemPosition::ptPlotCoords);
            pos->setTypeY(QCPItemPosition::ptAxisRectRatio);
        }
        line->point1->setCoords(0, 0);
        line->point2->setCoords(0, 1);
    }
    m_cursorLabel->setClipAxisRect(m_top);
    m_cursorLabel->position->setAxes(m_top->axis(QCPAxis::atBottom), m_top->axis(QCPAxis::atLeft));
    m_cursorLabel->position->setAxisRect(m_top);
    m_cursorLabel->position->setTypeX(QCPItemPosition::ptPlotCoords);
    m_cursorLabel->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
    m_cursorLabel->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
    m_cursorLabel->setPadding(QMargins(4, 2, 4, 2));
    p->setMouseTracking(true);
    p->installEventFilter(this);
    // Once laid out, the legend's place and the axes' size are known: the band above the curves is measured again,
    // and a range that moved is drawn on the next replot (which then finds it right).
    connect(p, &QCustomPlot::afterLayout, this, [this] {
        if (fitLegend())
            requestReplot();
    });
    setRankCursor(0, false);
    applyPalette();
}

void SpectrumPlot::applyPalette()
{
    PlotWidget::applyPalette();
    if (!m_bottom)
        return;
    styleAxisRect(m_bottom);
    const QColor cursor = accent(3);
    for (auto* line : {m_cursorTop, m_cursorBottom})
        line->setPen(QPen(cursor, 2));
    m_cursorLabel->setColor(foreground());
    QColor bg = background();
    bg.setAlpha(220);
    m_cursorLabel->setBrush(bg);
    m_cursorLabel->setPen(QPen(cursor));
    rebuild();
}

void SpectrumPlot::setSeries(const QList<Series>& series, const QString& valueLabel)
{
    m_series = series;
    m_valueLabel = valueLabel;
    if (m_highlighted >= m_series.size())
        m_highlighted = -1;
    rebuild();
}

void SpectrumPlot::setHighlighted(int index)
{
    m_highlighted = index;
    rebuild();
}

void SpectrumPlot::setRankLimits(std::int64_t minimum, std::int64_t maximum)
{
    m_minRank = minimum;
    m_maxRank = std::max(minimum, maximum);
}

void SpectrumPlot::setPlaceholder(const QString& text)
{
    m_placeholder = text;
    if (m_series.isEmpty())
        setEmptyMessage(text.isEmpty() ? tr("No spectra to show") : text);
}

void SpectrumPlot::setRankCursor(std::int64_t rank, bool visible)
{
    m_rank = rank;
    m_cursorVisible = visible;
    placeCursor();
    requestReplot();
}

void SpectrumPlot::dragCursorTo(std::int64_t rank)
{
    rank = std::clamp(rank, m_minRank, std::max(m_minRank, m_maxRank));
    setRankCursor(rank, m_cursorVisible);
    Q_EMIT rankDragged(rank);
    Q_EMIT rankDragFinished(rank);
}

void SpectrumPlot::rebuild()
{
    QCustomPlot* p = plot();
    p->clearGraphs();
    if (m_series.isEmpty())
        m_cursorVisible = false; // a cursor on no spectrum would be the last model's
    setEmptyMessage(m_series.isEmpty() ? (m_placeholder.isEmpty() ? tr("No spectra to show") : m_placeholder) : QString());
    const bool many = m_series.size() > 8;
    double maxS = 0.0;
    std::size_t longest = 0;
    for (const auto& s : m_series) {
        if (!s.singular.empty())
            maxS = std::max(maxS, s.singular.front());
        longest = std::max(longest, s.singular.size());
    }
    const double floor = maxS > 0 ? maxS * 1e-9 : 1e-12;
    double minS = maxS;
    for (int i = 0; i < m_series.size(); ++i) {
        const Series& s = m_series[i];
        QColor c = m_series.size() <= 7 && !many ? accent(i) : ramp(s.shade);
        const bool dim = m_highlighted >= 0 && i != m_highlighted;
        if (dim)
            c.setAlpha(60);
        QPen pen(c, i == m_highlighted ? 2.5 : 1.5);
        if (s.dashed)
            pen.setStyle(Qt::DashLine);
        QCPGraph* g = p->addGraph(m_top->axis(QCPAxis::atBottom), m_top->axis(QCPAxis::atLeft));
        g->setName(s.name);
        g->setPen(pen);
        QVector<double> x, y;
        for (std::size_t k = 0; k < s.singular.size(); ++k) {
            if (s.singular[k] <= floor)
                break;
            x.append(static_cast<double>(k + 1));
            y.append(s.singular[k]);
            minS = std::min(minS, s.singular[k]);
        }
        g->setData(x, y, true);
        QCPGraph* e = p->addGraph(m_bottom->axis(QCPAxis::atBottom), m_bottom->axis(QCPAxis::atLeft));
        e->setPen(pen);
        e->removeFromLegend();
        QVector<double> ex, ey;
        for (std::size_t k = 0; k < s.retained.size(); ++k) {
            ex.append(static_cast<double>(k));
            ey.append(100.0 * s.retained[k]);
        }
        e->setData(ex, ey, true);
    }
    if (m_highlighted >= 0 && m_highlighted < m_series.size()) {
        // Draw the highlighted pair last so that it sits on top.
        p->graph(2 * m_highlighted)->setLayer(highlightLayer());
        p->graph(2 * m_highlighted + 1)->setLayer(highlightLayer());
    }
    m_top->axis(QCPAxis::atLeft)->setLabel(m_valueLabel);
    m_lowest = maxS > 0 ? std::max(minS, floor) / 1.5 : 0.0;
    m_highest = maxS > 0 ? maxS * 1.5 : 0.0;
    m_bottom->axis(QCPAxis::atBottom)->setRange(0, std::max<double>(1.0, static_cast<double>(longest)) + 0.5);
    // Many layers: one legend entry per layer would cover the curves, so the colour ramp stands for the layer. Split
    // spectra draw keys solid and values dashed: two entries say which is which.
    const bool split = std::any_of(m_series.begin(), m_series.end(), [](const Series& s) { return s.dashed; });
    if (many && split) {
        for (int i = 0; i < p->graphCount(); ++i)
            p->graph(i)->removeFromLegend();
        for (const bool dashed : {false, true}) {
            QCPGraph* key = p->addGraph(m_top->axis(QCPAxis::atBottom), m_top->axis(QCPAxis::atLeft));
            key->setName(dashed ? tr("values (dashed)") : tr("keys (solid)"));
            key->setPen(QPen(foreground(), 1.5, dashed ? Qt::DashLine : Qt::SolidLine));
        }
    }
    m_legendEntries = !m_series.isEmpty() && (m_series.size() <= 8 || split) ? (many ? 2 : static_cast<int>(m_series.size())) : 0;
    p->legend->setVisible(m_legendEntries > 0);
    if (p->legend->visible()) {
        m_top->insetLayout()->setInsetAlignment(0, Qt::AlignRight | Qt::AlignTop);
        styleLegend(p->legend);
    }
    fitLegend();
    placeCursor();
    requestReplot();
}

bool SpectrumPlot::fitLegend()
{
    // The legend sits in the top right corner of the spectra, where the singular values have fallen off, but a flat
    // spectrum (or a short axis) runs under it. The value range's top is raised until every curve under the legend's
    // width ends below it, as the bar and memory plots leave a band for theirs; the data keep at least 40% of the
    // height. Measured on the last layout (the legend's rect and the axes'), so again after each.
    if (m_highest <= 0.0)
        return false;
    QCPAxis* x = m_top->axis(QCPAxis::atBottom);
    QCPAxis* y = m_top->axis(QCPAxis::atLeft);
    double top = m_highest;
    const QRect axes = m_top->rect();
    // In a short plot one column of entries would need most of the height: as many columns as keep it within 40%.
    QCPLegend* key = plot()->legend;
    bool rewrapped = false;
    if (key->visible() && key->itemCount() > 0 && axes.height() > 20) {
        const int entries = key->itemCount();
        const int row = key->item(0)->minimumOuterSizeHint().height() + key->rowSpacing();
        int columns = 1;
        while (columns < std::min(entries, 4) && (entries + columns - 1) / columns * row > 0.4 * axes.height())
            ++columns;
        if (columns != m_legendColumns) {
            m_legendColumns = columns;
            key->setFillOrder(columns > 1 ? QCPLegend::foColumnsFirst : QCPLegend::foRowsFirst, false);
            key->setWrap(columns > 1 ? columns : 0);
            key->setFillOrder(key->fillOrder(), true); // re-fill the entries in the new shape
            rewrapped = true;
        }
    }
    const QRect legend = key->outerRect();
    if (key->visible() && axes.height() > 20 && legend.isValid()) {
        // The highest curve point under the legend, and the points just beside it (the lines between them).
        const double left = x->pixelToCoord(legend.left()) - 1.0;
        const double right = x->pixelToCoord(legend.right()) + 1.0;
        double under = 0.0;
        for (int i = 0; i < plot()->graphCount(); ++i) {
            const QCPGraph* g = plot()->graph(i);
            if (g->valueAxis() != y)
                continue;
            for (auto it = g->data()->findBegin(left, false); it != g->data()->constEnd() && it->key <= right; ++it)
                under = std::max(under, it->value);
        }
        if (under > 0.0) {
            // That point lies below the legend and a gap: on the logarithmic axis, log(top) - log(under) is that
            // share of log(top) - log(lowest).
            const double share = std::clamp(static_cast<double>(legend.bottom() + 6 - axes.top()) / static_cast<double>(axes.height()), 0.0, 0.6);
            top = std::max(top, std::exp((std::log(under) - share * std::log(m_lowest)) / (1.0 - share)));
        }
    }
    const QCPRange before = y->range();
    y->setRange(m_lowest, top);
    return rewrapped || before.lower <= 0.0 || std::abs(std::log(before.upper / top)) > 1e-3 || std::abs(std::log(before.lower / m_lowest)) > 1e-3;
}

void SpectrumPlot::placeCursor()
{
    const bool visible = m_cursorVisible && !m_series.isEmpty();
    const double x = static_cast<double>(m_rank);
    for (auto* line : {m_cursorTop, m_cursorBottom}) {
        line->setVisible(visible);
        line->point1->setCoords(x, 0);
        line->point2->setCoords(x, 1);
    }
    m_cursorLabel->setVisible(visible);
    if (!visible)
        return;
    QString energy;
    if (m_highlighted >= 0 && m_highlighted < m_series.size()) {
        const auto& r = m_series[m_highlighted].retained;
        if (!r.empty())
            energy = tr("%1% energy kept").arg(100.0 * r[static_cast<std::size_t>(std::clamp<std::int64_t>(m_rank, 0, static_cast<std::int64_t>(r.size()) - 1))], 0, 'f', 1);
    } else {
        double lo = 1.0, hi = 0.0;
        for (const auto& s : m_series) {
            if (s.retained.empty())
                continue;
            const double v = s.retained[static_cast<std::size_t>(std::clamp<std::int64_t>(m_rank, 0, static_cast<std::int64_t>(s.retained.size()) - 1))];
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        if (hi >= lo)
            energy = tr("%1–%2% energy kept").arg(100.0 * lo, 0, 'f', 1).arg(100.0 * hi, 0, 'f', 1);
    }
    m_cursorLabel->setText(tr("k = %1  ·  %2  (drag)").arg(m_rank).arg(energy));
    m_cursorLabel->position->setCoords(x, 0.02);
}

std::int64_t SpectrumPlot::rankAtPixel(double x) const
{
    const double coord = m_bottom->axis(QCPAxis::atBottom)->pixelToCoord(x);
    return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::lround(coord)), m_minRank, std::max(m_minRank, m_maxRank));
}

bool SpectrumPlot::eventFilter(QObject* watched, QEvent* event)
{
    if (watched != plot() || !m_cursorVisible || m_series.isEmpty())
        return PlotWidget::eventFilter(watched, event);
    switch (event->type()) {
    case QEvent::MouseButtonPress: {
        auto* me = static_cast<QMouseEvent*>(event);
        const QPointF pos = me->position();
        if (me->button() == Qt::LeftButton && (m_top->rect().contains(pos.toPoint()) || m_bottom->rect().contains(pos.toPoint()))) {
            m_dragging = true;
            const std::int64_t rank = rankAtPixel(pos.x());
            setRankCursor(rank, true);
            Q_EMIT rankDragged(rank);
            return true;
        }
        break;
    }
    case QEvent::MouseMove: {
        auto* me = static_cast<QMouseEvent*>(event);
        const double cursorPx = m_bottom->axis(QCPAxis::atBottom)->coordToPixel(static_cast<double>(m_rank));
        plot()->setCursor(m_dragging || std::abs(me->position().x() - cursorPx) < 6 ? Qt::SplitHCursor : Qt::ArrowCursor);
        if (m_dragging) {
            const std::int64_t rank = rankAtPixel(me->position().x());
            if (rank != m_rank) {
                setRankCursor(rank, true);
                Q_EMIT rankDragged(rank);
            }
            return true;
        }
        break;
    }
    case QEvent::MouseButtonRelease:
        if (m_dragging) {
            m_dragging = false;
            Q_EMIT rankDragFinished(m_rank);
            return true;
        }
        break;
    default:
        break;
    }
    return PlotWidget::eventFilter(watched, event);
}

QString SpectrumPlot::csv() const
{
    if (m_series.isEmpty())
        return QString();
    QString out = QStringLiteral("series,rank,singular_value,energy_kept_at_rank\n");
    for (const auto& s : m_series) {
        const std::size_t n = std::max(s.singular.size(), s.retained.size());
        for (std::size_t k = 0; k < n; ++k) {
            // Row k: the k-th singular value (1-based rank k+1 keeps it) and the energy kept at rank k.
            out += QStringLiteral("\"%1\",%2,%3,%4\n")
                       .arg(s.name)
                       .arg(k)
                       .arg(k < s.singular.size() ? QString::number(s.singular[k], 'g', 10) : QString())
                       .arg(k < s.retained.size() ? QString::number(s.retained[k], 'g', 10) : QString());
        }
    }
    return out;
}

} // namespace mla
