#pragma once

#include "model/model_config.h"

#include <vector>

namespace mla {

// Angular frequency of each pair j in [0, headDim/2), after any rope_scaling (linear, llama3), in float32 as
// Hugging Face computes it.
std::vector<float> ropeFrequencies(const RopeConfig& rope, std::int64_t headDim);

// Wavelength in tokens of a pair: 2 pi / w_j.
double ropeWavelength(float frequency);

// Rotates `pairs` (x[i], x[i + pairs]) pairs of one head vector in place by angle position * freqs[i] — the "half"
// layout of a head or of a kept-dims block (freqs lists the frequency of each pair in that block).
void applyRope(float* x, const float* freqs, int pairs, std::int64_t position);

} // namespace mla
