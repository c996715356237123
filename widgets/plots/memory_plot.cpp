#include "plots/memory_plot.h"

#include "document/formatting.h"

#include "plots/qcustomplot_include.h"

#include <QToolTip>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mla {
namespace {

// Tick labels of a logarithmic bytes axis in binary units, up to the first tick above the data: the legend's band
// above them is not a range of values anyone reads.
class BytesLogTicker : public QCPAxisTickerLog {
public:
    double highest = 0.0; // 0: every tick labelled

protected:
    QString getTickLabel(double tick, const QLocale&, QChar, int) override
    {
        return highest > 0.0 && tick > highest * logBase() * 1.0001 ? QString() : fmt::bytes(tick);
    }
};

class ContextLogTicker : public QCPAxisTickerLog {
protected:
    QString getTickLabel(double tick, const QLocale&, QChar, int) override
    {
        const auto n = static_cast<std::int64_t>(std::llround(tick));
        if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
            return QStringLiteral("%1M").arg(n / (1024 * 1024));
        if (n >= 1024 && n % 1024 == 0)
            return QStringLiteral("%1k").arg(n / 1024);
        return QString::number(n);
    }
};

} // namespace

MemoryPlot::MemoryPlot(QWidget* parent) : PlotWidget(parent)
{
    setTitle(tr("KV cache memory"));
    QCustomPlot* p = plot();
    p->xAxis->setScaleType(QCPAxis::stLogarithmic);
    auto x = QSharedPointer<ContextLogTicker>(new ContextLogTicker);
    x->setLogBase(2);
    x->setSubTickCount(0);
    p->xAxis->setTicker(x);
    p->xAxis->setLabel(tr("context length (tokens)"));
    p->yAxis->setScaleType(QCPAxis::stLogarithmic);
    auto y = QSharedPointer<BytesLogTicker>(new BytesLogTicker);
    m_bytesTicker = y.get();
    // Binary units: ticks at powers of two (1 KiB, 4 KiB, 16 KiB, ...) read as round numbers, powers of ten do not.
    y->setLogBase(2);
    y->setTickCount(6);
    y->setSubTickCount(0);
    p->yAxis->setTicker(y);
    p->yAxis->setLabel(tr("KV cache"));
    // Two columns filled row by row (original | MLA, then the formats): half as tall. Small icons and no spacing
    // between rows: the band it needs above the curves (fitLegend) stays narrow.
    p->legend->setFillOrder(QCPLegend::foColumnsFirst, false);
    p->legend->setWrap(2);
    p->legend->setIconSize(22, 10);
    p->legend->setIconTextPadding(4);
    p->legend->setRowSpacing(0);
    p->legend->setColumnSpacing(4);
    p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignLeft | Qt::AlignTop);
    p->axisRect()->insetLayout()->setMargins(QMargins(8, 6, 8, 6));
    m_markerLine = new QCPItemStraightLine(p);
    m_markerLine->setVisible(false);
    m_placeholderItem = new QCPItemText(p);
    m_placeholderItem->position->setType(QCPItemPosition::ptAxisRectRatio);
    m_placeholderItem->position->setCoords(0.5, 0.5);
    m_placeholderItem->setVisible(false);
    p->setMouseTracking(true);
    p->installEventFilter(this);
    // Once laid out the axes' real height is known: the band is measured again, and a range that moved is drawn on
    // the next replot (which then finds it right).
    connect(p, &QCustomPlot::afterLayout, this, [this] {
        if (fitLegend())
            requestReplot();
    });
    applyPalette();
}

void MemoryPlot::applyPalette()
{
    PlotWidget::applyPalette();
    if (!m_markerLine)
        return;
    m_markerLine->setPen(QPen(foreground(), 1, Qt::DotLine));
    m_placeholderItem->setColor(foreground());
    rebuild();
}

void MemoryPlot::setCurves(const std::vector<std::int64_t>& contexts, const QList<Curve>& curves)
{
    m_contexts = contexts;
    m_curves = curves;
    rebuild();
}

void MemoryPlot::setPlaceholder(const QString& text)
{
    if (text == m_placeholder)
        return;
    m_placeholder = text;
    rebuild();
}

bool MemoryPlot::showsPlaceholder() const
{
    return m_curves.isEmpty();
}

void MemoryPlot::setMarker(std::int64_t context)
{
    m_marker = context;
    m_markerLine->setVisible(context > 0 && !m_curves.isEmpty());
    m_markerLine->point1->setCoords(static_cast<double>(context), 1);
    m_markerLine->point2->setCoords(static_cast<double>(context), 2);
    requestReplot();
}

void MemoryPlot::rebuild()
{
    QCustomPlot* p = plot();
    p->clearGraphs();
    double lo = 0.0, hi = 0.0;
    QVector<double> keys;
    for (std::int64_t n : m_contexts)
        keys.append(static_cast<double>(n));
    for (const Curve& c : m_curves) {
        QCPGraph* g = p->addGraph();
        g->setName(c.name);
        QPen pen(accent(c.colour), c.converted ? 2.5 : 1.5);
        pen.setStyle(c.style);
        g->setPen(pen);
        QVector<double> values;
        for (double b : c.bytes) {
            values.append(std::max(b, 1.0));
            lo = lo == 0.0 ? std::max(b, 1.0) : std::min(lo, std::max(b, 1.0));
            hi = std::max(hi, b);
        }
        g->setData(keys.mid(0, values.size()), values, true);
        if (c.measured) {
            g->setLineStyle(QCPGraph::lsNone);
            g->setScatterStyle(QCPScatterStyle(c.converted ? QCPScatterStyle::ssDiamond : QCPScatterStyle::ssSquare, QPen(accent(c.colour), 1.5),
                                               QBrush(Qt::NoBrush), 9));
        } else {
            g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 3));
        }
    }
    addLegendKey();
    m_lowest = lo;
    m_highest = hi;
    static_cast<BytesLogTicker*>(m_bytesTicker)->highest = hi;
    if (!m_contexts.empty())
        p->xAxis->setRange(static_cast<double>(m_contexts.front()) / 1.2, static_cast<double>(m_contexts.back()) * 1.2);
    // Without curves the axes would keep the last model's ranges and ticks: a message instead.
    const bool empty = m_curves.isEmpty();
    p->xAxis->setVisible(!empty);
    p->yAxis->setVisible(!empty);
    m_markerLine->setVisible(!empty && m_marker > 0);
    m_placeholderItem->setText(m_placeholder);
    m_placeholderItem->setVisible(empty && !m_placeholder.isEmpty());
    p->legend->setVisible(!empty);
    if (p->legend->visible())
        styleLegend(p->legend);
    fitLegend();
    requestReplot();
}

void MemoryPlot::addLegendKey()
{
    const bool keyed = !m_curves.isEmpty() && std::all_of(m_curves.begin(), m_curves.end(), [](const Curve& c) { return c.measured || !c.format.isEmpty(); });
    if (!keyed)
        return;
    QCustomPlot* p = plot();
    for (int i = 0; i < p->graphCount(); ++i)
        p->graph(i)->removeFromLegend();
    // Entries drawn by graphs without data: the models in their colours, the formats in their line styles, the marker
    // of a measurement.
    auto key = [p](const QString& name, const QPen& pen) {
        QCPGraph* g = p->addGraph();
        g->setName(name);
        g->setPen(pen);
        return g;
    };
    for (const bool converted : {false, true}) {
        const auto c = std::find_if(m_curves.begin(), m_curves.end(), [converted](const Curve& c) { return !c.measured && c.converted == converted; });
        if (c != m_curves.end())
            key(converted ? tr("MLA") : tr("original"), QPen(accent(c->colour), converted ? 2.5 : 1.5));
    }
    QStringList formats;
    for (const Curve& c : std::as_const(m_curves)) {
        if (!c.measured && !formats.contains(c.format)) {
            formats << c.format;
            QPen pen(foreground(), 1.5);
            pen.setStyle(c.style);
            key(c.format, pen);
        }
    }
    if (std::any_of(m_curves.begin(), m_curves.end(), [](const Curve& c) { return c.measured; })) {
        QCPGraph* g = key(tr("measured"), QPen(Qt::NoPen));
        g->setLineStyle(QCPGraph::lsNone);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDiamond, QPen(foreground(), 1.5), QBrush(Qt::NoBrush), 9));
    }
}

QStringList MemoryPlot::legendEntries() const
{
    QStringList out;
    QCustomPlot* p = plot();
    if (!p->legend->visible())
        return out;
    for (int i = 0; i < p->graphCount(); ++i) {
        if (p->legend->hasItemWithPlottable(p->graph(i)))
            out << p->graph(i)->name();
    }
    return out;
}

void MemoryPlot::resizeEvent(QResizeEvent* event)
{
    PlotWidget::resizeEvent(event);
    fitLegend();
    requestReplot();
}

bool MemoryPlot::fitLegend()
{
    // The legend sits in a band at the top of the axes that the value range leaves free, as the bar plot's does: the
    // range's top is raised until the highest curve ends below the legend. The curves rise to the right over the
    // whole width, so no corner inside the data is free. The room is the widget's less the axes' margins (those of
    // the last layout; an estimate before the first).
    QCustomPlot* p = plot();
    if (m_curves.isEmpty())
        return false;
    const QMargins margins = p->axisRect()->margins();
    const bool laidOut = margins.left() + margins.bottom() > 0;
    const int axisWidth = std::max(80, width() - (laidOut ? margins.left() + margins.right() : 80));
    const int axisHeight = std::max(60, height() - (laidOut ? margins.top() + margins.bottom() : 70));
    // Two columns when they fit across, else one.
    const QMargins inset = p->axisRect()->insetLayout()->margins();
    const int wrap = p->legend->wrap();
    QList<int> widths; // the entries' widths, in order
    for (int i = 0; i < p->legend->itemCount(); ++i) {
        if (QCPAbstractLegendItem* item = p->legend->item(i))
            widths << item->minimumOuterSizeHint().width();
    }
    const QMargins own = p->legend->margins();
    const int room = axisWidth - inset.left() - inset.right() - own.left() - own.right();
    auto across = [&](int n) { // the width of n columns, filled row by row
        QList<int> column(n, 0);
        for (int i = 0; i < widths.size(); ++i)
            column[i % n] = std::max(column[i % n], widths[i]);
        return std::accumulate(column.begin(), column.end(), 0) + (n - 1) * p->legend->columnSpacing();
    };
    const int columns = widths.size() > 1 && across(2) <= room ? 2 : 1;
    if (columns != wrap) {
        p->legend->setWrap(columns);
        p->legend->setFillOrder(QCPLegend::foColumnsFirst, true);
    }
    // The legend's height below the inset margin, and a gap, as a share of the axis height; the data keep at least
    // 40% of it.
    const double band = static_cast<double>(p->legend->minimumOuterSizeHint().height() + inset.top() + 6);
    const double headroom = std::clamp(band / static_cast<double>(axisHeight), 0.1, 0.6);
    // On the logarithmic axis: log(top) - log(highest) = headroom * (log(top) - log(bottom)).
    const double bottom = std::max(m_lowest / 2.0, 1.0);
    const double highest = std::max(m_highest, 2.0);
    const double top = std::exp((std::log(highest) - headroom * std::log(bottom)) / (1.0 - headroom));
    const QCPRange before = p->yAxis->range();
    p->yAxis->setRange(bottom, top);
    return p->legend->wrap() != wrap || std::abs(std::log(before.upper / top)) > 1e-3 || std::abs(std::log(before.lower / bottom)) > 1e-3;
}

QString MemoryPlot::valuesAt(std::int64_t context) const
{
    if (m_contexts.empty())
        return QString();
    // The nearest plotted context length (on the log axis).
    std::size_t best = 0;
    for (std::size_t i = 1; i < m_contexts.size(); ++i) {
        if (std::abs(std::log2(static_cast<double>(m_contexts[i]) / static_cast<double>(context)))
            < std::abs(std::log2(static_cast<double>(m_contexts[best]) / static_cast<double>(context))))
            best = i;
    }
    QString text = tr("<b>%1 tokens</b>").arg(fmt::integer(m_contexts[best]));
    for (const Curve& c : m_curves) {
        if (best < c.bytes.size())
            text += QStringLiteral("<br>%1: %2").arg(c.name.toHtmlEscaped(), fmt::bytes(c.bytes[best]));
    }
    return text;
}

bool MemoryPlot::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == plot() && event->type() == QEvent::MouseMove) {
        auto* me = static_cast<QMouseEvent*>(event);
        if (plot()->axisRect()->rect().contains(me->position().toPoint())) {
            const double context = plot()->xAxis->pixelToCoord(me->position().x());
            QToolTip::showText(me->globalPosition().toPoint(), valuesAt(static_cast<std::int64_t>(std::llround(context))), plot());
        } else {
            QToolTip::hideText();
        }
    }
    return PlotWidget::eventFilter(watched, event);
}

QString MemoryPlot::csv() const
{
    if (m_curves.isEmpty())
        return QString();
    QString out = QStringLiteral("context_tokens");
    for (const Curve& c : m_curves)
        out += QStringLiteral(",\"%1 (bytes)\"").arg(c.name);
    out += QLatin1Char('\n');
    for (std::size_t i = 0; i < m_contexts.size(); ++i) {
        out += QString::number(m_contexts[i]);
        for (const Curve& c : m_curves)
            out += QLatin1Char(',') + (i < c.bytes.size() ? QString::number(c.bytes[i], 'f', 0) : QString());
        out += QLatin1Char('\n');
    }
    return out;
}

} // namespace mla
