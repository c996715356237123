#pragma once

#include <QWidget>

class QButtonGroup;
class QComboBox;
class QLabel;

namespace mla {

class SpectrumPlot;
class Workbench;

// The spectra tab: singular values of each layer's [W_k_nope; W_v] (joint), W_k_nope (key), W_v (value) or key and
// value together (split), on the weights or on calibration activations (whitened), with the cumulative retained
// energy and a rank cursor tied to the latent width: dragging it sets d_c (for one layer when a layer is picked,
// which locks that layer).
class SpectrumView : public QWidget {
    Q_OBJECT
public:
    enum Kind { Joint, Key, Value, Split };

    explicit SpectrumView(Workbench* workbench, QWidget* parent = nullptr);

    SpectrumPlot* plot() const { return m_plot; }
    QComboBox* sourceCombo() const { return m_source; }
    QComboBox* layerCombo() const { return m_layer; }
    QButtonGroup* kindGroup() const { return m_kind; }
    void setKind(Kind kind);
    Kind kind() const;

protected:
    void showEvent(QShowEvent* event) override;

private:
    void refreshLayers();
    void refresh();        // series and cursor (analysis, kind, source or layer changed)
    void refreshCursor();  // cursor and caption only (settings moved)
    bool m_dirty = false;
    void onRankDragged(qint64 rank);

    Workbench* m_workbench;
    QComboBox* m_source = nullptr;
    QComboBox* m_layer = nullptr;
    QButtonGroup* m_kind = nullptr;
    QLabel* m_caption = nullptr;
    SpectrumPlot* m_plot = nullptr;
};

} // namespace mla
