#include "panels/gguf_export_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

namespace mla {

GgufExportDialog::GgufExportDialog(const QString& what, const QString& file, const QString& name, QWidget* parent) : QDialog(parent)
{
    setWindowTitle(tr("Export as GGUF"));
    m_what = new QLabel(what, this);
    m_what->setWordWrap(true);
    m_what->setTextFormat(Qt::RichText);

    m_file = new QLineEdit(file, this);
    m_file->setToolTip(tr("One .gguf file, written under a temporary name and renamed when complete"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    connect(browse, &QPushButton::clicked, this, &GgufExportDialog::browse);
    auto* fileRow = new QWidget(this);
    auto* fileLayout = new QHBoxLayout(fileRow);
    fileLayout->setContentsMargins(0, 0, 0, 0);
    fileLayout->addWidget(m_file, 1);
    fileLayout->addWidget(browse);

    m_weights = new QComboBox(this);
    m_weights->addItem(tr("as the model"), -1);
    const std::pair<GgmlType, QString> types[] = {
        {GgmlType::F32, tr("F32")}, {GgmlType::F16, tr("F16")}, {GgmlType::BF16, tr("BF16")},
        {GgmlType::Q8_0, tr("Q8_0 (8-bit blocks of 32)")}, {GgmlType::Q4_0, tr("Q4_0 (4-bit blocks of 32)")}};
    for (const auto& [type, label] : types)
        m_weights->addItem(label, static_cast<int>(type));
    m_weights->setToolTip(tr("Type of the weight matrices (norms stay F32). As the model: F32, F16 or BF16, whichever it has. "
                             "In Q8_0 and Q4_0 a matrix whose rows are not whole 32-weight blocks is written in F16 (the report "
                             "lists them)."));

    m_name = new QLineEdit(name, this);
    m_name->setToolTip(tr("general.name in the file (llama.cpp shows it when loading)"));

    auto* form = new QFormLayout;
    form->addRow(tr("File"), fileRow);
    form->addRow(tr("Weights"), m_weights);
    form->addRow(tr("Name"), m_name);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Export"));
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    connect(m_file, &QLineEdit::textChanged, this,
            [buttons](const QString& t) { buttons->button(QDialogButtonBox::Ok)->setEnabled(!t.trimmed().isEmpty()); });
    buttons->button(QDialogButtonBox::Ok)->setEnabled(!file.trimmed().isEmpty());

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_what);
    layout->addLayout(form);
    layout->addWidget(buttons);
    resize(560, sizeHint().height());
}

QString GgufExportDialog::file() const
{
    QString path = m_file->text().trimmed();
    if (!path.isEmpty() && QFileInfo(path).suffix().isEmpty())
        path += QStringLiteral(".gguf");
    return path;
}

std::optional<GgmlType> GgufExportDialog::weights() const
{
    const int v = m_weights->currentData().toInt();
    if (v < 0)
        return std::nullopt;
    return static_cast<GgmlType>(v);
}

QString GgufExportDialog::name() const
{
    return m_name->text().trimmed();
}

QString GgufExportDialog::whatText() const
{
    return m_what->text();
}

void GgufExportDialog::browse()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Export as GGUF"), m_file->text(), tr("GGUF files (*.gguf)"), nullptr,
                                                      QFileDialog::DontConfirmOverwrite); // the window asks, by core's policy
    if (!path.isEmpty())
        m_file->setText(path);
}

} // namespace mla
