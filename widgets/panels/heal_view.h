#pragma once

#include "heal/healer.h"

#include <QWidget>

#include <vector>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace mla {

class BarPlot;
class Workbench;

// The Heal step after Convert (docs/healing.md): steps, tokens, sequence length, learning rate, seed and start; a
// per-layer progress bar and a live plot of each layer's held-out block loss before and after; the expected work;
// Stop with the choice of keeping the layers healed so far or none; and the model's held-out KL / perplexity /
// top-1 and the sanity check of the healed model against the unhealed one.
class HealView : public QWidget {
    Q_OBJECT
public:
    explicit HealView(Workbench* workbench, QWidget* parent = nullptr);

    QSpinBox* stepsSpin() const { return m_steps; }
    QSpinBox* tokensSpin() const { return m_tokens; }
    QSpinBox* sequenceLengthSpin() const { return m_sequenceLength; }
    QDoubleSpinBox* learningRateSpin() const { return m_learningRate; }
    QSpinBox* seedSpin() const { return m_seed; }
    QComboBox* startCombo() const { return m_start; }
    QComboBox* onStopCombo() const { return m_onStop; }
    QPushButton* healButton() const { return m_heal; }
    QPushButton* stopButton() const { return m_stop; }
    QPushButton* checkButton() const { return m_check; }
    QProgressBar* layerProgress() const { return m_progress; }
    BarPlot* lossPlot() const { return m_plot; }
    QTableWidget* resultsTable() const { return m_results; }
    QString costText() const;
    QString statusText() const;

private:
    void applyOptions();
    void refresh();
    void refreshCost();
    void refreshResults();
    void refreshProgress(); // from the current heal, when not healing
    void onStep(const HealProgress& progress, const QString& start);
    void resetLive();
    void plotLosses();

    Workbench* m_workbench;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_tokens = nullptr;
    QSpinBox* m_sequenceLength = nullptr;
    QDoubleSpinBox* m_learningRate = nullptr;
    QSpinBox* m_seed = nullptr;
    QComboBox* m_start = nullptr;
    QComboBox* m_onStop = nullptr;
    QPushButton* m_heal = nullptr;
    QPushButton* m_stop = nullptr;
    QPushButton* m_check = nullptr;
    QLabel* m_cost = nullptr;
    QLabel* m_status = nullptr;
    QProgressBar* m_progress = nullptr;
    BarPlot* m_plot = nullptr;
    QTableWidget* m_results = nullptr;

    // The running heal, as its steps arrive (per layer: held-out loss at step 0 and the best so far).
    bool m_live = false;
    QString m_liveStart;
    std::vector<double> m_liveBefore;
    std::vector<double> m_liveAfter;
    std::int64_t m_liveLayer = 0;
    std::int64_t m_liveStep = 0;
    std::int64_t m_liveSteps = 0;
};

} // namespace mla
