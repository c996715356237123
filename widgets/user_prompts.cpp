#include "user_prompts.h"

#include <QCoreApplication>
#include <QFileDialog>
#include <QFileInfo>
#include <QMessageBox>
#include <QPushButton>

namespace mla {
namespace {

class DialogPrompts final : public UserPrompts {
    Q_DECLARE_TR_FUNCTIONS(DialogPrompts)

public:
    UnsavedAnswer unsavedWork(QWidget* parent, const QString& action) override
    {
        const auto answer = QMessageBox::warning(parent, tr("Unsaved work"),
                                                 tr("The analysis, settings or check results have not been saved in a session.\n\n"
                                                    "Save them before %1?")
                                                     .arg(action),
                                                 QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Save);
        if (answer == QMessageBox::Save)
            return UnsavedAnswer::Save;
        return answer == QMessageBox::Discard ? UnsavedAnswer::Discard : UnsavedAnswer::Cancel;
    }

    QString sessionFile(QWidget* parent, const QString& proposed) override
    {
        return QFileDialog::getSaveFileName(parent, tr("Save Session"), proposed, tr("Sessions (*.h5)"));
    }

    bool openSessionModel(QWidget* parent, const QString& model) override
    {
        return QMessageBox::question(parent, tr("Open the session's model?"),
                                     tr("The session was made from %1.\n\nOpen it? The preview works without it; converting, "
                                        "checking and exporting need the weights.")
                                         .arg(model),
                                     QMessageBox::Open | QMessageBox::Ignore, QMessageBox::Open)
            == QMessageBox::Open;
    }

    QString locateSessionModel(QWidget* parent, const QString& missing, const QString& folder) override
    {
        QMessageBox box(QMessageBox::Question, tr("Locate the session's model"),
                        tr("The session was made from %1, which is not there any more.").arg(missing), QMessageBox::Ignore, parent);
        box.setInformativeText(tr("Locate it to convert, check and export; the preview works without it."));
        QPushButton* locate = box.addButton(tr("Locate Model…"), QMessageBox::AcceptRole);
        box.setDefaultButton(locate);
        box.exec();
        if (box.clickedButton() != locate)
            return QString();
        return QFileDialog::getOpenFileName(parent, tr("Locate %1").arg(QFileInfo(missing).fileName()), folder,
                                            tr("Checkpoints (*.safetensors *.bin *.gguf *.json);;All files (*)"));
    }
};

} // namespace

std::unique_ptr<UserPrompts> dialogPrompts()
{
    return std::make_unique<DialogPrompts>();
}

} // namespace mla
