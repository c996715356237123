#pragma once

#include "document/workbench.h"

#include <QVariantMap>

namespace mla {

// The settings a user expects to find again next time, as a QVariantMap for QSettings: the choices that do not
// depend on a model's shape (strategy, method, sigma, target saving, beyond-the-paper options, preset, calibration).
// Pair counts and latent widths are model-specific and start from the defaults when a model opens.
QVariantMap settingsToVariant(const SettingsSnapshot& snapshot);
// Applies what `map` holds onto `snapshot`; unknown or invalid entries are ignored.
void settingsFromVariant(const QVariantMap& map, SettingsSnapshot& snapshot);

} // namespace mla
