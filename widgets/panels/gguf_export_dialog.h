#pragma once

#include "formats/gguf_quantize.h"

#include <QDialog>

#include <optional>

class QComboBox;
class QLabel;
class QLineEdit;

namespace mla {

// File > Export as GGUF…: the output file (.gguf), the weight type (as the model, F32, F16, BF16, Q8_0, Q4_0) and
// general.name, with a line saying what is written: the DeepSeek-V3 conversion as llama.cpp's deepseek2, or the
// opened model as it is (and why, for an MHA2MLA conversion). The window checks the destination and starts the job.
class GgufExportDialog : public QDialog {
    Q_OBJECT
public:
    // `what`: the sentence saying what will be exported; `file`, `name`: the defaults.
    GgufExportDialog(const QString& what, const QString& file, const QString& name, QWidget* parent = nullptr);

    QString file() const;                     // with .gguf added when it has no suffix
    std::optional<GgmlType> weights() const;  // null: as the model
    QString name() const;

    QLineEdit* fileEdit() const { return m_file; }
    QComboBox* weightsCombo() const { return m_weights; }
    QLineEdit* nameEdit() const { return m_name; }
    QString whatText() const;

private:
    void browse();

    QLabel* m_what = nullptr;
    QLineEdit* m_file = nullptr;
    QComboBox* m_weights = nullptr;
    QLineEdit* m_name = nullptr;
};

} // namespace mla
