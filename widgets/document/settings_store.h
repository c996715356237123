#pragma once

#include "settings/settings.h"

#include <QVariantMap>

namespace mla {

// The settings a user expects to find again next time, as a QVariantMap for QSettings: the fields of core's settings
// table that have a preference key (the choices that do not depend on a model's shape: strategy, method, sigma,
// target saving, beyond-the-paper options, preset, calibration). Pair counts, latent widths and locks are
// model-specific and start from the defaults when a model opens.
QVariantMap settingsToVariant(const Settings& settings);
// Applies what `map` holds onto `settings`; unknown or invalid entries are ignored.
void settingsFromVariant(const QVariantMap& map, Settings& settings);

} // namespace mla
