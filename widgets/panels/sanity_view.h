#pragma once

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QTableView;
class QTextBrowser;

namespace mla {

class GenerationModel;
class SanityMetricsModel;
class Workbench;

// The check after a conversion: perplexity of both models, KL, top-1 agreement, measured KV bytes per token, the
// converted model's quality with a chosen KV cache format (latent part, RoPE-key part, group size: the CLI's
// --kv-cache, --kv-cache-rope, --kv-cache-group) next to the float32 cache, and the two continuations of a prompt
// side by side with the differing tokens highlighted (aligned by longest common subsequence). The prompt is text or
// token ids (a model without a tokenizer), the continuations greedy or sampled (temperature, top-p, seed).
class SanityView : public QWidget {
    Q_OBJECT
public:
    explicit SanityView(Workbench* workbench, QWidget* parent = nullptr);

    SanityMetricsModel* metricsModel() const { return m_metrics; }
    GenerationModel* generationModel() const { return m_generation; }
    QLineEdit* promptEdit() const { return m_prompt; }
    QPushButton* runButton() const { return m_run; }
    QComboBox* promptModeCombo() const { return m_promptMode; } // text, or token ids (the only choice without a tokenizer)
    QDoubleSpinBox* temperatureSpin() const { return m_temperature; }
    QDoubleSpinBox* topPSpin() const { return m_topP; }
    QSpinBox* stepsSpin() const { return m_steps; }
    QSpinBox* seedSpin() const { return m_seed; }
    // Shown when the tokenizer turns part of the prompt into its unknown token (empty otherwise).
    QString promptWarning() const;
    QComboBox* cacheCombo() const { return m_cache; }         // latent part: f32, bf16, int8, int4
    QComboBox* ropeCacheCombo() const { return m_ropeCache; } // RoPE keys: the default for the latent's type, or a type
    QSpinBox* cacheGroupSpin() const { return m_cacheGroup; }
    QString statusText() const;
    QString originalHtml() const;
    QString convertedHtml() const;

protected:
    void changeEvent(QEvent* event) override;

private:
    void refresh();
    void runCheck();
    void syncOptions();
    void followModel(); // token ids when the new model has no tokenizer
    QString sideHtml(bool converted) const;

    Workbench* m_workbench;
    QLineEdit* m_prompt = nullptr;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_sequences = nullptr;
    QComboBox* m_promptMode = nullptr;
    QDoubleSpinBox* m_temperature = nullptr;
    QDoubleSpinBox* m_topP = nullptr;
    QSpinBox* m_seed = nullptr;
    QLabel* m_promptWarning = nullptr;
    QComboBox* m_cache = nullptr;
    QComboBox* m_ropeCache = nullptr;
    QSpinBox* m_cacheGroup = nullptr;
    QString m_optionsProblem; // why the controls do not make valid options (shown, and the check refused)
    QPushButton* m_run = nullptr;
    QLabel* m_status = nullptr;
    SanityMetricsModel* m_metrics = nullptr;
    GenerationModel* m_generation = nullptr;
    QTableView* m_metricsView = nullptr;
    QTextBrowser* m_original = nullptr;
    QTextBrowser* m_converted = nullptr;
    QTableView* m_tokens = nullptr;
};

} // namespace mla
