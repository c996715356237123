#pragma once

#include "conversion/conversion_settings.h"

#include <string>
#include <vector>

namespace mla {

// Named starting points for the settings; explicit choices are applied after a preset and override it.
//  paper: the MHA2MLA public code's initialisation — 2-norm partial RoPE, joint SVD of the weights, singular values in
//         the up projections, one latent width for every layer.
//  best:  our training-free conversion — pairs and latent chosen per layer for the KV budget from measured
//         attention-output errors, pairs ranked by the rotation-loss measure, whitened (activation-aware) joint
//         decomposition with the key/value balance chosen per layer, and sequential least-squares refits of the up
//         projections and W_o on the inputs each layer really sees (docs/beyond-the-paper.md).
struct PresetInfo {
    std::string name;
    std::string description;
};

const std::vector<PresetInfo>& conversionPresets();
// Throws an Error for an unknown name.
void applyPreset(const std::string& name, ConversionSettings& settings);

// True when the settings need calibration data beyond the RoPE scores (whitening, refits, measured allocation).
bool settingsNeedCalibrationPass(const ConversionSettings& settings);

} // namespace mla
