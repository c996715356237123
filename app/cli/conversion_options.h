#pragma once

#include "analysis/analyzer.h"
#include "arguments.h"
#include "conversion/conversion_settings.h"

#include <vector>

namespace mla::cli {

// Options shared by analyze and convert: calibration source and the conversion settings.
std::vector<OptionSpec> calibrationOptions();
std::vector<OptionSpec> settingsOptions();

CalibrationOptions calibrationFrom(const Arguments& args);
ConversionSettings settingsFrom(const Arguments& args, const ModelConfig& config);
bool calibrationGiven(const Arguments& args);

} // namespace mla::cli
