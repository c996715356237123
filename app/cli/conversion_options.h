#pragma once

#include "arguments.h"
#include "model/model_config.h"
#include "settings/settings.h"

#include <vector>

namespace mla::cli {

// The flags of analyze and convert that set the settings (core/settings/settings_table.h: the calibration source and
// the conversion settings), for their --help.
std::vector<OptionSpec> calibrationOptions();
std::vector<OptionSpec> settingsOptions();

// The settings those flags ask for; a bad value or combination is a usage error (exit 2).
Settings settingsFrom(const Arguments& args, const ModelConfig& config);
bool calibrationGiven(const Arguments& args);

} // namespace mla::cli
