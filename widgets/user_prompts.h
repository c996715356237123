#pragma once

#include <QString>

#include <memory>

class QWidget;

namespace mla {

// The questions the window asks in modal dialogs before it goes on (unsaved work, where to save the session, the
// model of a session opened without it). They sit behind this interface so that a test answers them offscreen; the
// window's own answers come from dialogPrompts(), which shows the dialogs.
class UserPrompts {
public:
    enum class UnsavedAnswer { Save, Discard, Cancel };

    virtual ~UserPrompts() = default;
    // Save / Discard / Cancel the unsaved analysis, settings or check results before `action` ("quitting",
    // "opening x.bin").
    virtual UnsavedAnswer unsavedWork(QWidget* parent, const QString& action) = 0;
    // The file to save the session in, `proposed` offered; empty when the user cancelled.
    virtual QString sessionFile(QWidget* parent, const QString& proposed) = 0;
    // A session was opened without its model, which is still at `model`: open it?
    virtual bool openSessionModel(QWidget* parent, const QString& model) = 0;
    // A session was opened without its model and `missing` is not there any more: the checkpoint the user located
    // (looked for from `folder`), empty when they did not.
    virtual QString locateSessionModel(QWidget* parent, const QString& missing, const QString& folder) = 0;
};

// The prompts as message boxes and file dialogs.
std::unique_ptr<UserPrompts> dialogPrompts();

} // namespace mla
