#pragma once

#include "plots/plot_widget.h"
#include "view_data/view_data.h"

class QCPColorMap;
class QCPColorScale;

namespace mla {

class KeptCellsLayer;

// The RoPE contribution heatmap: layers (rows, layer 0 on top) by frequency pairs (columns), for one KV head or all
// of them side by side. Pairs that keep their rotation under the current strategy are outlined. Hovering a cell
// shows its value, the pair's frequency and its wavelength in tokens. Linear or logarithmic colour scale.
class HeatmapPlot : public PlotWidget {
    Q_OBJECT
public:
    explicit HeatmapPlot(QWidget* parent = nullptr);

    void setGrid(const view::ScoreGrid& grid, const std::vector<view::PairFrequency>& frequencies, const QString& measureName);
    void clear();
    // The message shown instead of the plot while there is no grid (why there is none).
    void setPlaceholder(const QString& text);
    // New kept pairs (a settings move): only the outlines change.
    void updateKept(const std::vector<LayerPairSelection>& selections);
    void setLogScale(bool on);
    bool logScale() const { return m_log; }

    const view::ScoreGrid& grid() const { return m_grid; }
    // The hover text of a cell (row = layer, column as in the grid); empty outside.
    QString cellText(std::int64_t row, std::int64_t column) const;
    // The cell under a widget position, or {-1, -1}.
    std::pair<std::int64_t, std::int64_t> cellAt(const QPoint& widgetPos) const;

    QString csv() const override;

Q_SIGNALS:
    void cellHovered(qint64 layer, qint64 kvHead, qint64 pair);
    void logScaleChanged(bool on);

protected:
    void applyPalette() override;
    void addContextActions(QMenu* menu) override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuild();

    QCPColorMap* m_map = nullptr;
    QCPColorScale* m_scale = nullptr;
    KeptCellsLayer* m_kept = nullptr;
    view::ScoreGrid m_grid;
    QString m_placeholder;
    std::vector<view::PairFrequency> m_frequencies;
    QString m_measure;
    bool m_log = false;
};

} // namespace mla
