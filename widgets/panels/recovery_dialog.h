#pragma once

#include "pipeline/recover.h"

#include <QDialog>

class QComboBox;
class QLineEdit;
class QPlainTextEdit;
class QSpinBox;

namespace mla {

// Recovery in PyTorch (Run > Recover in PyTorch…): the folders (teacher = the open model, student = the last export),
// the recipe's main options, and the exact command line, live, to copy and run on a bigger machine (torchrun on
// GPUs) when this one has no PyTorch or is too small. Accepting runs the same recovery here (pipeline::recover).
class RecoveryDialog : public QDialog {
    Q_OBJECT
public:
    RecoveryDialog(const QString& teacher, const QString& student, QWidget* parent = nullptr);

    pipeline::RecoveryRequest request() const;
    QString commandLine() const; // what the command box shows

    QLineEdit* studentEdit() const { return m_student; }
    QLineEdit* outEdit() const { return m_out; }
    QSpinBox* stepsBox() const { return m_steps; }

private:
    void updateCommand();

    QLineEdit* m_teacher = nullptr;
    QLineEdit* m_student = nullptr;
    QLineEdit* m_out = nullptr;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_sample = nullptr;
    QSpinBox* m_seqLen = nullptr;
    QSpinBox* m_batch = nullptr;
    QLineEdit* m_lr = nullptr;
    QComboBox* m_train = nullptr;
    QLineEdit* m_python = nullptr;
    QPlainTextEdit* m_command = nullptr;
};

} // namespace mla
