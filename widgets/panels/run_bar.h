#pragma once

#include <QElapsedTimer>
#include <QWidget>

class QComboBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QToolButton;

namespace mla {

class Workbench;

// The bottom bar: compute device, Analyze and Convert, the running job's progress with its stage and ETA, and
// Cancel. It only forwards clicks to the workbench and mirrors the workbench's job signals.
class RunBar : public QWidget {
    Q_OBJECT
public:
    explicit RunBar(Workbench* workbench, QWidget* parent = nullptr);

    QPushButton* analyzeButton() const { return m_analyze; }
    QPushButton* convertButton() const { return m_convert; }
    QPushButton* cancelButton() const { return m_cancel; }
    QComboBox* deviceCombo() const { return m_device; }
    QProgressBar* progressBar() const { return m_progress; }
    QString etaText() const;
    // The estimates next to Analyze and Convert ("≈ 12 s · 40 MiB"; the tooltips say how they were made).
    QString analyzeCostText() const;
    QString convertCostText() const;
    QString stageText() const;

private:
    void updateButtons();
    void updateEstimates();
    void onStarted(const QString& title);
    void onProgress(double fraction, const QString& stage, double eta);
    void onFinished(const QString& title, bool ok);

    Workbench* m_workbench;
    QComboBox* m_device = nullptr;
    QPushButton* m_analyze = nullptr;
    QPushButton* m_convert = nullptr;
    QLabel* m_analyzeCost = nullptr;
    QLabel* m_convertCost = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_stage = nullptr;
    QLabel* m_eta = nullptr;
    QPushButton* m_cancel = nullptr;
    QElapsedTimer m_elapsed;
    int m_running = 0;
};

} // namespace mla
