#pragma once

#include <QWidget>

class QCheckBox;
class QComboBox;
class QLabel;

namespace mla {

class HeatmapPlot;
class Workbench;

// The RoPE contribution tab: the heatmap of a per-pair score (layers by frequency pairs) for one KV head or all of
// them, with the pairs kept by the current strategy outlined, and a linear / logarithmic colour scale.
class RopeView : public QWidget {
    Q_OBJECT
public:
    explicit RopeView(Workbench* workbench, QWidget* parent = nullptr);

    HeatmapPlot* heatmap() const { return m_heatmap; }
    QComboBox* headCombo() const { return m_head; }
    QComboBox* measureCombo() const { return m_measure; }
    QCheckBox* logCheck() const { return m_log; }

protected:
    void showEvent(QShowEvent* event) override;

private:
    void refreshHeads();
    void refresh();        // the whole grid (analysis, measure or head changed)
    void refreshKept();    // outlines and caption (settings moved)
    void updateCaption();
    bool m_dirty = false;  // a refresh was skipped while hidden

    Workbench* m_workbench;
    QComboBox* m_head = nullptr;
    QComboBox* m_measure = nullptr;
    QCheckBox* m_log = nullptr;
    QLabel* m_caption = nullptr;
    HeatmapPlot* m_heatmap = nullptr;
};

} // namespace mla
