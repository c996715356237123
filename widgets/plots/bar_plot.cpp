#include "plots/bar_plot.h"

#include "plots/qcustomplot_include.h"

#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace mla {

BarPlot::BarPlot(QWidget* parent) : PlotWidget(parent)
{
    setTitle(tr("Predicted error per layer"));
    m_group = new QCPBarsGroup(plot());
    m_group->setSpacingType(QCPBarsGroup::stAbsolute);
    m_group->setSpacing(1);
    plot()->setMouseTracking(true);
    plot()->installEventFilter(this);
    plot()->xAxis->grid()->setVisible(false);
    applyPalette();
}

void BarPlot::applyPalette()
{
    PlotWidget::applyPalette();
    if (m_group)
        rebuild();
}

void BarPlot::setData(const QStringList& categories, const QList<Series>& series, const QString& categoryLabel, const QString& valueLabel)
{
    m_categories = categories;
    m_series = series;
    m_categoryLabel = categoryLabel;
    m_valueLabel = valueLabel;
    rebuild();
}

void BarPlot::setReferenceLine(double value, const QString& label)
{
    m_reference = value;
    m_referenceLabel = label;
    rebuild();
}

void BarPlot::setPlaceholder(const QString& text)
{
    m_placeholder = text;
    rebuild();
}

void BarPlot::resizeEvent(QResizeEvent* event)
{
    PlotWidget::resizeEvent(event);
    const int before = m_labelStep;
    updateCategoryTicks();
    if (m_labelStep != before)
        requestReplot();
}

void BarPlot::updateCategoryTicks()
{
    // The widest label plus a gap, against the room the axis has (the widget's width less the value axis' labels).
    const QFontMetrics metrics(plot()->xAxis->tickLabelFont());
    int widest = 1;
    for (const QString& c : m_categories)
        widest = std::max(widest, metrics.horizontalAdvance(c));
    const int room = std::max(100, width() - 80);
    const int n = static_cast<int>(m_categories.size());
    m_labelStep = n > 0 ? std::max(1, (n * (widest + metrics.averageCharWidth() * 2) + room - 1) / room) : 1;
    auto ticker = QSharedPointer<QCPAxisTickerText>(new QCPAxisTickerText);
    for (int i = 0; i < n; i += m_labelStep)
        ticker->addTick(i, m_categories[i]);
    plot()->xAxis->setTicker(ticker);
}

void BarPlot::rebuild()
{
    QCustomPlot* p = plot();
    p->clearPlottables();
    p->clearItems();
    m_group->clear();
    const int n = static_cast<int>(m_series.size());
    const double width = n > 0 ? 0.8 / n : 0.8;
    double top = 0.0;
    bool empty = true;
    for (int s = 0; s < n; ++s) {
        auto* bars = new QCPBars(p->xAxis, p->yAxis);
        bars->setName(m_series[s].name);
        QColor c = accent(s);
        bars->setPen(QPen(c.darker(130), 1));
        bars->setBrush(c);
        // Axis-aligned rectangles need no antialiasing; without it (and opaque) they take the raster engine's fast
        // rectangle fill, several times cheaper than blended polygons on every live-preview frame.
        bars->setAntialiased(false);
        bars->setAntialiasedFill(false);
        bars->setWidth(width);
        QVector<double> keys, values;
        for (std::size_t i = 0; i < m_series[s].values.size(); ++i) {
            const double v = m_series[s].values[i];
            if (v < 0 || std::isnan(v))
                continue;
            keys.append(static_cast<double>(i));
            values.append(v);
            top = std::max(top, v);
            empty = false;
        }
        bars->setData(keys, values, true);
        if (n > 1)
            bars->setBarsGroup(m_group);
    }
    updateCategoryTicks();
    p->xAxis->setLabel(m_categoryLabel);
    p->yAxis->setLabel(m_valueLabel);
    p->xAxis->setRange(-0.6, std::max(1.0, static_cast<double>(m_categories.size())) - 0.4);
    if (m_reference >= 0) {
        top = std::max(top, m_reference);
        auto* line = new QCPItemStraightLine(p);
        line->point1->setCoords(0, m_reference);
        line->point2->setCoords(1, m_reference);
        line->setPen(QPen(foreground(), 1, Qt::DashLine));
        auto* label = new QCPItemText(p);
        label->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
        label->position->setCoords(0.99, m_reference);
        label->setPositionAlignment(Qt::AlignRight | Qt::AlignBottom);
        label->setText(m_referenceLabel);
        label->setColor(foreground());
    }
    // The legend sits in the top band of the plot: the value axis leaves that band free, so it never covers a bar
    // (its rows' height against the axis rect's, which is about the widget's less the axes' labels).
    const bool legend = n > 1 && !empty;
    double headroom = 0.13;
    if (legend) {
        // A row is the taller of its text and its icon, padded; the legend has a margin inside and outside.
        const int row = std::max(QFontMetrics(p->legend->font()).height(), p->legend->iconSize().height()) + 6;
        const double rowsHeight = static_cast<double>(n * row) + 24.0;
        const double axisHeight = std::max(80.0, static_cast<double>(height()) - 70.0);
        headroom = std::clamp(rowsHeight / axisHeight, 0.13, 0.6);
    }
    p->yAxis->setRange(0, top > 0 ? top / (1.0 - headroom) : 1.0);
    // No bars: the message replaces the plot (no axes with the last data's ticks and range).
    setEmptyMessage(empty ? (m_placeholder.isEmpty() ? tr("Nothing to plot yet") : m_placeholder) : QString());
    p->legend->setVisible(legend);
    if (p->legend->visible()) {
        p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignLeft | Qt::AlignTop);
        styleLegend(p->legend);
    }
    requestReplot();
}

QString BarPlot::barText(int category, int series) const
{
    if (series < 0 || series >= m_series.size() || category < 0 || static_cast<std::size_t>(category) >= m_series[series].values.size())
        return QString();
    const double v = m_series[series].values[static_cast<std::size_t>(category)];
    if (v < 0)
        return QString();
    const QString name = category < m_categories.size() ? m_categories[category] : QString::number(category);
    return tr("%1 %2 · %3: %4").arg(m_categoryLabel, name, m_series[series].name, QString::number(v, 'g', 4));
}

bool BarPlot::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == plot() && event->type() == QEvent::MouseMove) {
        auto* me = static_cast<QMouseEvent*>(event);
        QCustomPlot* p = plot();
        QString text;
        for (int s = 0; s < p->plottableCount() && text.isEmpty(); ++s) {
            auto* bars = qobject_cast<QCPBars*>(p->plottable(s));
            if (!bars)
                continue;
            QVariant details;
            if (bars->selectTest(me->position(), false, &details) >= 0 && bars->selectTest(me->position(), false, &details) < 1) {
                const QCPDataSelection sel = details.value<QCPDataSelection>();
                if (!sel.isEmpty()) {
                    const auto it = bars->data()->at(sel.dataRange().begin());
                    text = barText(static_cast<int>(std::lround(it->key)), s);
                }
            }
        }
        if (text.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(me->globalPosition().toPoint(), text, p);
    }
    return PlotWidget::eventFilter(watched, event);
}

QString BarPlot::csv() const
{
    if (m_series.isEmpty() || m_categories.isEmpty())
        return QString();
    QString out = m_categoryLabel.isEmpty() ? QStringLiteral("category") : m_categoryLabel;
    for (const auto& s : m_series)
        out += QStringLiteral(",\"%1\"").arg(s.name);
    out += QLatin1Char('\n');
    for (int i = 0; i < m_categories.size(); ++i) {
        out += m_categories[i];
        for (const auto& s : m_series) {
            const double v = static_cast<std::size_t>(i) < s.values.size() ? s.values[static_cast<std::size_t>(i)] : -1.0;
            out += QLatin1Char(',') + (v < 0 ? QString() : QString::number(v, 'g', 10));
        }
        out += QLatin1Char('\n');
    }
    return out;
}

} // namespace mla
