#include "document/settings_command.h"

namespace mla {

SettingsCommand::SettingsCommand(Workbench* workbench, Settings before, Settings after, const QString& text,
                                 int mergeId)
    : m_workbench(workbench), m_before(std::move(before)), m_after(std::move(after)), m_mergeId(mergeId)
{
    setText(text);
}

void SettingsCommand::undo()
{
    m_workbench->applySnapshot(m_before);
}

void SettingsCommand::redo()
{
    m_workbench->applySnapshot(m_after);
}

bool SettingsCommand::mergeWith(const QUndoCommand* other)
{
    if (m_mergeId < 0 || other->id() != m_mergeId)
        return false;
    m_after = static_cast<const SettingsCommand*>(other)->m_after;
    return true;
}

} // namespace mla
