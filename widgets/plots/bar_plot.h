#pragma once

#include "plots/plot_widget.h"

#include <QList>
#include <QStringList>

#include <vector>

class QCPBarsGroup;

namespace mla {

// Grouped bars per category (here: the predicted reconstruction error per layer), one colour per series (e.g.
// weight space and activation space, or two presets side by side), with an optional dashed reference line.
// Hovering a bar shows its value.
class BarPlot : public PlotWidget {
    Q_OBJECT
public:
    struct Series {
        QString name;
        std::vector<double> values; // one per category; negative = unknown (not drawn)
    };

    explicit BarPlot(QWidget* parent = nullptr);

    void setData(const QStringList& categories, const QList<Series>& series, const QString& categoryLabel, const QString& valueLabel);
    void setReferenceLine(double value, const QString& label); // value < 0 hides it
    // Text shown in the middle of the plot when there is nothing to plot (e.g. "Run Analyze to see predicted errors").
    void setPlaceholder(const QString& text);

    const QList<Series>& series() const { return m_series; }
    QString barText(int category, int series) const;

    QString csv() const override;
    // Every how many categories a label is drawn: all of them when they fit the axis, else thinned so that labels do
    // not overlap (30 layers on a narrow plot).
    int categoryLabelStep() const { return m_labelStep; }

protected:
    void applyPalette() override;
    void resizeEvent(QResizeEvent* event) override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuild();
    void updateCategoryTicks();
    int m_labelStep = 1;

    QCPBarsGroup* m_group = nullptr;
    QStringList m_categories;
    QList<Series> m_series;
    QString m_categoryLabel;
    QString m_valueLabel;
    double m_reference = -1.0;
    QString m_referenceLabel;
    QString m_placeholder;
};

} // namespace mla
