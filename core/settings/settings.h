#pragma once

#include "analysis/calibration.h"
#include "conversion/conversion_settings.h"

#include <vector>

namespace mla {

// Every choice a user makes about converting one model, as one value: the conversion settings, where calibration
// tokens come from, and the layers whose latent width was set by hand. The CLI builds it from its flags
// (settingsFromFlags), the workbench keeps it as its undo unit, a session stores it in /settings and the saved
// preferences hold its model-independent part; settings_table.h lists every field once with its name in each of
// those places. Equal values describe the same conversion and the same next analysis.
struct Settings {
    ConversionSettings conversion;
    CalibrationOptions calibration;
    // Layers whose latent width was set by hand: they keep it when the global width or the saving moves. Either
    // empty (nothing locked, e.g. from the CLI) or one entry per layer (normalise() sizes it).
    std::vector<bool> lockedLayers;

    bool operator==(const Settings&) const = default;
    bool anyLocked() const;
};

} // namespace mla
