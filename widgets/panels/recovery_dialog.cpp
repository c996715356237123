#include "panels/recovery_dialog.h"

#include "util/child_process.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleValidator>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

namespace mla {
namespace {

QWidget* withBrowse(QLineEdit* edit, bool folder, QWidget* parent)
{
    auto* row = new QWidget(parent);
    auto* layout = new QHBoxLayout(row);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(edit, 1);
    auto* browse = new QPushButton(QObject::tr("Browse…"), row);
    layout->addWidget(browse);
    QObject::connect(browse, &QPushButton::clicked, row, [edit, folder, row] {
        const QString chosen = folder ? QFileDialog::getExistingDirectory(row, QObject::tr("Choose a folder"), edit->text())
                                      : QFileDialog::getOpenFileName(row, QObject::tr("Choose a model"), edit->text());
        if (!chosen.isEmpty())
            edit->setText(chosen);
    });
    return row;
}

QSpinBox* spin(int min, int max, int value, QWidget* parent)
{
    auto* s = new QSpinBox(parent);
    s->setRange(min, max);
    s->setValue(value);
    return s;
}

} // namespace

RecoveryDialog::RecoveryDialog(const QString& teacher, const QString& student, QWidget* parent) : QDialog(parent)
{
    setWindowTitle(tr("Recover in PyTorch"));
    auto* layout = new QVBoxLayout(this);
    auto* intro = new QLabel(tr("Distils the exported (converted, healed or not) model from the original with the recipe "
                                "the export carries (recovery/distill.py): KL on the original's next-token "
                                "distributions, AdamW with a cosine schedule. It needs a Python with PyTorch here; "
                                "for bigger models, copy the command and run it on a GPU machine, with "
                                "<tt>torchrun --nproc_per_node N</tt> in front for several GPUs."), this);
    intro->setWordWrap(true);
    layout->addWidget(intro);

    auto* form = new QFormLayout();
    m_teacher = new QLineEdit(teacher, this);
    m_student = new QLineEdit(student, this);
    m_out = new QLineEdit(student.isEmpty() ? QString() : student + QStringLiteral("-recovered"), this);
    m_steps = spin(1, 10000000, 100, this);
    m_sample = spin(1, 100000000, 256, this);
    m_seqLen = spin(2, 1 << 20, 128, this);
    m_batch = spin(1, 1 << 20, 8, this);
    m_lr = new QLineEdit(QStringLiteral("3e-3"), this);
    auto* lrValidator = new QDoubleValidator(0.0, 10.0, 12, m_lr);
    lrValidator->setNotation(QDoubleValidator::ScientificNotation);
    m_lr->setValidator(lrValidator);
    m_train = new QComboBox(this);
    m_train->addItem(tr("attention (the converted layers)"), QStringLiteral("attention"));
    m_train->addItem(tr("all parameters"), QStringLiteral("all"));
    m_python = new QLineEdit(this);
    m_python->setPlaceholderText(tr("auto: $MLA_PYTHON, python3, /usr/bin/python3 (the first with PyTorch)"));
    form->addRow(tr("Original (teacher):"), withBrowse(m_teacher, false, this));
    form->addRow(tr("Export to recover (student):"), withBrowse(m_student, true, this));
    form->addRow(tr("Write the recovered model to:"), m_out);
    form->addRow(tr("Optimizer steps:"), m_steps);
    form->addRow(tr("Training sequences sampled from the original:"), m_sample);
    form->addRow(tr("Sequence length:"), m_seqLen);
    form->addRow(tr("Sequences per step:"), m_batch);
    form->addRow(tr("Peak learning rate:"), m_lr);
    form->addRow(tr("Train:"), m_train);
    form->addRow(tr("Python:"), m_python);
    layout->addLayout(form);

    layout->addWidget(new QLabel(tr("The same run as a command:"), this));
    m_command = new QPlainTextEdit(this);
    m_command->setReadOnly(true);
    m_command->setMaximumHeight(90);
    layout->addWidget(m_command);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Recover Here"));
    QPushButton* copy = buttons->addButton(tr("Copy Command"), QDialogButtonBox::ActionRole);
    connect(copy, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(commandLine()); });
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    layout->addWidget(buttons);

    for (QLineEdit* e : {m_teacher, m_student, m_out, m_lr, m_python})
        connect(e, &QLineEdit::textChanged, this, &RecoveryDialog::updateCommand);
    for (QSpinBox* s : {m_steps, m_sample, m_seqLen, m_batch})
        connect(s, &QSpinBox::valueChanged, this, &RecoveryDialog::updateCommand);
    connect(m_train, &QComboBox::currentIndexChanged, this, &RecoveryDialog::updateCommand);
    connect(m_student, &QLineEdit::textChanged, this, [this](const QString& s) {
        if (!s.isEmpty())
            m_out->setText(s + QStringLiteral("-recovered"));
    });
    updateCommand();
    resize(720, sizeHint().height());
}

pipeline::RecoveryRequest RecoveryDialog::request() const
{
    pipeline::RecoveryRequest r;
    r.teacher = m_teacher->text().toStdString();
    r.student = m_student->text().toStdString();
    r.out = m_out->text().toStdString();
    r.python = m_python->text().trimmed().toStdString();
    r.recipeOptions = {{"steps", std::to_string(m_steps->value())},
                       {"sample", std::to_string(m_sample->value())},
                       {"seq-len", std::to_string(m_seqLen->value())},
                       {"batch", std::to_string(m_batch->value())},
                       {"lr", m_lr->text().trimmed().toStdString()}};
    if (m_train->currentData().toString() != QStringLiteral("attention"))
        r.recipeOptions.emplace_back("train", m_train->currentData().toString().toStdString());
    return r;
}

QString RecoveryDialog::commandLine() const { return m_command->toPlainText(); }

void RecoveryDialog::updateCommand()
{
    m_command->setPlainText(QString::fromStdString(shellCommandLine(pipeline::recoveryCommand(request()))));
}

} // namespace mla
