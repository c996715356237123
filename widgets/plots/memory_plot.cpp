#include "plots/memory_plot.h"

#include "document/formatting.h"

#include "plots/qcustomplot_include.h"

#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

// Tick labels of a logarithmic bytes axis in binary units.
class BytesLogTicker : public QCPAxisTickerLog {
protected:
    QString getTickLabel(double tick, const QLocale&, QChar, int) override { return fmt::bytes(tick); }
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
    // Binary units: ticks at powers of two (1 KiB, 4 KiB, 16 KiB, ...) read as round numbers, powers of ten do not.
    y->setLogBase(2);
    y->setTickCount(6);
    y->setSubTickCount(0);
    p->yAxis->setTicker(y);
    p->yAxis->setLabel(tr("KV cache"));
    // Original and MLA of one cache format side by side in the legend: half as tall, and the pairs read across.
    p->legend->setFillOrder(QCPLegend::foColumnsFirst, false);
    p->legend->setWrap(2);
    m_markerLine = new QCPItemStraightLine(p);
    m_markerLine->setVisible(false);
    m_placeholderItem = new QCPItemText(p);
    m_placeholderItem->position->setType(QCPItemPosition::ptAxisRectRatio);
    m_placeholderItem->position->setCoords(0.5, 0.5);
    m_placeholderItem->setVisible(false);
    p->setMouseTracking(true);
    p->installEventFilter(this);
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
    if (!m_contexts.empty()) {
        p->xAxis->setRange(static_cast<double>(m_contexts.front()) / 1.2, static_cast<double>(m_contexts.back()) * 1.2);
        p->yAxis->setRange(std::max(lo / 2.0, 1.0), std::max(hi * 2.0, 2.0));
    }
    // Without curves the axes would keep the last model's ranges and ticks: a message instead.
    const bool empty = m_curves.isEmpty();
    p->xAxis->setVisible(!empty);
    p->yAxis->setVisible(!empty);
    m_markerLine->setVisible(!empty && m_marker > 0);
    m_placeholderItem->setText(m_placeholder);
    m_placeholderItem->setVisible(empty && !m_placeholder.isEmpty());
    p->legend->setVisible(!empty);
    if (p->legend->visible()) {
        p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignLeft | Qt::AlignTop);
        styleLegend(p->legend);
    }
    requestReplot();
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
