#pragma once

#include "conversion/conversion_settings.h"
#include "model/model_config.h"

namespace mla {

// The widest latent a layer of this model can use with `method` when `pairs` RoPE pairs per head stay uncompressed:
// the rank of what the latent compresses ([W_k_nope; W_v] for joint, and so on); wider latents only add zeros.
std::int64_t maxLatentWidth(const ModelConfig& config, LatentMethod method, std::int64_t pairs);

// Checks every numeric conversion setting against the model before any calibration or conversion starts, so a bad
// value fails at once instead of after minutes of work: kept pairs, uniform start, latent widths (global and per
// layer), the KV saving (reachable with the kept pairs) and budget, the refit ridge. Each Error names the setting as
// the command line spells it and the allowed range for this model.
void validateConversionSettings(const ModelConfig& config, const ConversionSettings& settings);

} // namespace mla
