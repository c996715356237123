#pragma once

#include <QWidget>

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

// The check after a conversion: perplexity of both models, KL, top-1 agreement, measured KV bytes per token, and the
// two greedy continuations of a prompt side by side with the differing tokens highlighted.
class SanityView : public QWidget {
    Q_OBJECT
public:
    explicit SanityView(Workbench* workbench, QWidget* parent = nullptr);

    SanityMetricsModel* metricsModel() const { return m_metrics; }
    GenerationModel* generationModel() const { return m_generation; }
    QLineEdit* promptEdit() const { return m_prompt; }
    QPushButton* runButton() const { return m_run; }
    QString originalHtml() const;
    QString convertedHtml() const;

private:
    void refresh();
    void runCheck();
    QString sideHtml(bool converted) const;

    Workbench* m_workbench;
    QLineEdit* m_prompt = nullptr;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_sequences = nullptr;
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
