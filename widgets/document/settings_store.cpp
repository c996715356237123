#include "document/settings_store.h"

#include "settings/settings_table.h"

namespace mla {

QVariantMap settingsToVariant(const Settings& settings)
{
    QVariantMap m;
    for (const auto& [key, text] : preferenceEntries(settings))
        m[QString::fromStdString(key)] = QString::fromStdString(text);
    return m;
}

void settingsFromVariant(const QVariantMap& m, Settings& settings)
{
    applyPreferences(settings, [&m](std::string_view key) -> std::optional<std::string> {
        const QString k = QString::fromUtf8(key.data(), static_cast<qsizetype>(key.size()));
        if (!m.contains(k))
            return std::nullopt;
        // Older files stored typed values (a double, a bool, an int): their text form is what the table parses.
        return m.value(k).toString().toStdString();
    });
}

} // namespace mla
