#pragma once

#include "plots/bar_plot.h"
#include "view_data/view_data.h"

#include <QWidget>

#include <vector>

class QComboBox;
class QLabel;
class QPushButton;
class QTableView;
class QTimer;

namespace mla {

class BarPlot;
class LayerPreviewModel;
class MemoryPlot;
class Workbench;

// The live preview, updated as a control moves (closed forms from the analysis's spectra, no decomposition): KV per
// token and the saving, bytes per token and at the chosen context, the parameter change, the predicted error per
// layer (bars, optionally beside a preset's), memory against context length for the original and converted model
// in BF16 / int8 / int4 (with the bytes the sanity check's caches really took as points), and the per-layer table where a layer's latent can be set and locked by hand.
class PreviewView : public QWidget {
    Q_OBJECT
public:
    explicit PreviewView(Workbench* workbench, QWidget* parent = nullptr);

    BarPlot* errorPlot() const { return m_errors; }
    MemoryPlot* memoryPlot() const { return m_memory; }
    LayerPreviewModel* layerModel() const { return m_layers; }
    QTableView* layerTable() const { return m_table; }
    QComboBox* compareCombo() const { return m_compare; }
    QString summaryText() const;
    // DeepSeek-V3 target: the line with its widths (planned, and as converted); empty for the mha2mla target.
    QString layoutText() const; // the cards' text, for tests
    // What the comparison with a preset says (the note under the combo); empty when none is chosen.
    QString comparisonText() const;
    QString warningText() const; // the settings' warnings (the cache grows, a layer is rank-deficient); empty when none
    QString problemText() const; // why the settings cannot convert; empty when they can
    QPushButton* measureButton() const { return m_measure; }

public Q_SLOTS:
    void refresh();

private:
    void refreshMemory();
    // The chosen preset's series (added to `series`), or the note saying why there is none.
    void refreshComparison(bool predicted, QList<BarPlot::Series>& series);
    // The sanity check's measured caches, when it checked a conversion made with the current settings.
    std::vector<view::MeasuredCache> measuredPoints() const;
    QString deepSeekLayoutHtml() const;

    Workbench* m_workbench;
    QLabel* m_kv = nullptr;
    QLabel* m_bytes = nullptr;
    QLabel* m_params = nullptr;
    QLabel* m_error = nullptr;
    QLabel* m_problem = nullptr;
    QLabel* m_warning = nullptr;
    QLabel* m_layout = nullptr; // DeepSeek-V3 target: its widths, planned and as converted
    QComboBox* m_compare = nullptr;
    QLabel* m_compareNote = nullptr;
    QPushButton* m_measure = nullptr;
    BarPlot* m_errors = nullptr;
    MemoryPlot* m_memory = nullptr;
    LayerPreviewModel* m_layers = nullptr;
    QTableView* m_table = nullptr;
    QTimer* m_fitColumns = nullptr;
};

} // namespace mla
