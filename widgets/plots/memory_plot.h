#pragma once

#include "plots/plot_widget.h"

#include <QList>
#include <QStringList>

#include <vector>

class QCPAxisTickerLog;
class QCPItemStraightLine;
class QCPItemText;

namespace mla {

// KV cache memory against context length (both axes logarithmic: a saving is a constant vertical offset), one curve
// per model and cache format, with a marker at the chosen context length. Measured series (the bytes the engine
// allocated for the sanity check's caches) are drawn as points without a line over the formula curves.
class MemoryPlot : public PlotWidget {
    Q_OBJECT
public:
    struct Curve {
        QString name;               // "original · BF16"
        std::vector<double> bytes;  // one per context length
        int colour = 0;             // accent index
        Qt::PenStyle style = Qt::SolidLine; // one style per cache format
        bool converted = false;     // drawn thicker
        bool measured = false;      // points only (large markers, no line): a measurement, not a formula
        // The cache format's short name ("BF16"). When every formula curve has one, the legend is a key (colour: the
        // model, line style: the format, a marker: measured) instead of one entry per curve: a third as many rows.
        QString format = QString();
    };

    explicit MemoryPlot(QWidget* parent = nullptr);

    void setCurves(const std::vector<std::int64_t>& contexts, const QList<Curve>& curves);
    void setMarker(std::int64_t context); // <= 0 hides it
    // Shown instead of empty axes while there are no curves ("Open a model to begin").
    void setPlaceholder(const QString& text);
    bool showsPlaceholder() const; // no curves: the axes are hidden and the placeholder (if any) shown
    QString placeholder() const { return m_placeholder; }
    QString valuesAt(std::int64_t context) const; // the tooltip text of a context length

    const QList<Curve>& curves() const { return m_curves; }
    QStringList legendEntries() const; // the legend's entries, in order (empty without curves)
    QString csv() const override;

protected:
    void applyPalette() override;
    bool eventFilter(QObject* watched, QEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;

private:
    void rebuild();
    void addLegendKey(); // the key entries, when every formula curve names its format
    bool fitLegend(); // the value range leaves a band above the curves for the legend; true when it changed

    std::vector<std::int64_t> m_contexts;
    QList<Curve> m_curves;
    QCPAxisTickerLog* m_bytesTicker = nullptr; // owned by the value axis
    double m_lowest = 0.0;  // the plotted bytes' range
    double m_highest = 0.0;
    std::int64_t m_marker = 0;
    QCPItemStraightLine* m_markerLine = nullptr;
    QCPItemText* m_placeholderItem = nullptr;
    QString m_placeholder;
};

} // namespace mla
