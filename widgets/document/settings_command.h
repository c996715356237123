#pragma once

#include "document/workbench.h"

#include <QUndoCommand>

namespace mla {

// One undoable settings change: the whole settings value before and after. Consecutive changes of one control
// (same merge id, e.g. a slider drag) merge into one step.
class SettingsCommand : public QUndoCommand {
public:
    SettingsCommand(Workbench* workbench, Settings before, Settings after, const QString& text, int mergeId);

    void undo() override;
    void redo() override;
    int id() const override { return m_mergeId; }
    bool mergeWith(const QUndoCommand* other) override;

private:
    Workbench* m_workbench;
    Settings m_before;
    Settings m_after;
    int m_mergeId;
};

} // namespace mla
