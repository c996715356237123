#pragma once

#include "conversion/conversion_settings.h"

#include <QWidget>

#include <functional>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSlider;
class QSpinBox;

namespace mla {

class Workbench;

// Every conversion setting, each with a tooltip giving the formula it drives: the target layout (MHA2MLA or
// DeepSeek-V3, FlashMLA's 512 + 64), preset, RoPE strategy and pairs per
// head (also as dims), SVD method, latent width (also per KV head) and the target saving that sets it, sigma
// placement, the beyond-the-paper options, and the calibration source. Changes go to the workbench as undoable
// commands (a slider drag is one undo step); the panel mirrors the workbench's settings, never keeps its own.
class SettingsPanel : public QWidget {
    Q_OBJECT
public:
    explicit SettingsPanel(Workbench* workbench, QWidget* parent = nullptr);

    // For tests and the self-test: the controls, to move them like a user would.
    QComboBox* presetCombo() const { return m_preset; }
    QComboBox* targetCombo() const { return m_target; }
    QCheckBox* flashMlaCheck() const { return m_flashMla; }
    QComboBox* strategyCombo() const { return m_strategy; }
    QSpinBox* uniformStartSpin() const { return m_uniformStart; }
    QSlider* pairsSlider() const { return m_pairsSlider; }
    QSpinBox* pairsSpin() const { return m_pairs; }
    QComboBox* methodCombo() const { return m_method; }
    QSlider* latentSlider() const { return m_latentSlider; }
    QSpinBox* latentSpin() const { return m_latent; }
    QDoubleSpinBox* savingSpin() const { return m_saving; }
    QComboBox* sigmaCombo() const { return m_sigma; }
    QComboBox* decompositionCombo() const { return m_decomposition; }
    QSpinBox* powerIterationsSpin() const { return m_powerIterations; }
    QCheckBox* activationCheck() const { return m_activation; }
    QCheckBox* balanceCheck() const { return m_balance; }
    QCheckBox* refitCheck() const { return m_refit; }
    QCheckBox* allocateCheck() const { return m_allocate; }
    QPushButton* allocateButton() const { return m_allocateNow; }
    QComboBox* calibrationSourceCombo() const { return m_calibSource; }
    QSpinBox* samplesSpin() const { return m_samples; }
    QSpinBox* sequenceLengthSpin() const { return m_sequenceLength; }
    QLineEdit* calibrationFileEdit() const { return m_calibFile; }
    QLabel* pairsNote() const { return m_pairsNote; }
    QLabel* latentNote() const { return m_latentNote; }

Q_SIGNALS:
    // The user is looking at a control that belongs to a topic of the "How it works" panel (rope, svd, cache,
    // calibration).
    void topicRequested(const QString& topic);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void build();
    void refresh();
    QString targetText() const;
    // Applies `edit` to a copy of the workbench's settings and pushes it; `custom` marks the preset as overridden.
    void changeConversion(const QString& what, int mergeId, const std::function<void(ConversionSettings&)>& edit, bool custom = true);
    void setCalibrationFromControls(const QString& what);
    void browseCalibrationFile();

    Workbench* m_workbench;
    QComboBox* m_preset = nullptr;
    QComboBox* m_target = nullptr;
    QCheckBox* m_flashMla = nullptr;
    QLabel* m_targetNote = nullptr;
    QComboBox* m_strategy = nullptr;
    QSpinBox* m_uniformStart = nullptr;
    QSlider* m_pairsSlider = nullptr;
    QSpinBox* m_pairs = nullptr;
    QLabel* m_pairsNote = nullptr;
    QComboBox* m_method = nullptr;
    QSlider* m_latentSlider = nullptr;
    QSpinBox* m_latent = nullptr;
    QLabel* m_latentNote = nullptr;
    QDoubleSpinBox* m_saving = nullptr;
    QComboBox* m_sigma = nullptr;
    QComboBox* m_decomposition = nullptr;
    QSpinBox* m_powerIterations = nullptr;
    QCheckBox* m_activation = nullptr;
    QCheckBox* m_balance = nullptr;
    QCheckBox* m_refit = nullptr;
    QCheckBox* m_allocate = nullptr;
    QPushButton* m_allocateNow = nullptr;
    QComboBox* m_calibSource = nullptr;
    QSpinBox* m_samples = nullptr;
    QSpinBox* m_sequenceLength = nullptr;
    QLineEdit* m_calibFile = nullptr;
    QPushButton* m_browse = nullptr;
    QLabel* m_status = nullptr;
};

} // namespace mla
