#include "model/rope.h"

#include <cmath>
#include <numbers>

namespace mla {

std::vector<float> ropeFrequencies(const RopeConfig& rope, std::int64_t headDim)
{
    const std::int64_t pairs = headDim / 2;
    std::vector<float> freqs(static_cast<std::size_t>(pairs));
    for (std::int64_t j = 0; j < pairs; ++j) {
        // Hugging Face: 1 / base ** (arange(0, dim, 2).float() / dim), evaluated in float32.
        const float exponent = static_cast<float>(2 * j) / static_cast<float>(headDim);
        float w = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
        switch (rope.scaling) {
        case RopeScaling::None:
            break;
        case RopeScaling::Linear:
            w = static_cast<float>(w / rope.factor);
            break;
        case RopeScaling::Llama3: {
            // Meta's Llama 3.1 recipe: long wavelengths are slowed by `factor`, short ones kept, and the band
            // between is interpolated smoothly.
            const double lowWavelength = rope.originalMaxPositions / rope.lowFreqFactor;
            const double highWavelength = rope.originalMaxPositions / rope.highFreqFactor;
            const double wavelength = 2.0 * std::numbers::pi / w;
            if (wavelength > lowWavelength) {
                w = static_cast<float>(w / rope.factor);
            } else if (wavelength >= highWavelength) {
                const double smooth = (rope.originalMaxPositions / wavelength - rope.lowFreqFactor)
                                      / (rope.highFreqFactor - rope.lowFreqFactor);
                w = static_cast<float>((1.0 - smooth) * w / rope.factor + smooth * w);
            }
            break;
        }
        }
        freqs[static_cast<std::size_t>(j)] = w;
    }
    return freqs;
}

double ropeWavelength(float frequency)
{
    return 2.0 * std::numbers::pi / frequency;
}

void applyRope(float* x, const float* freqs, int pairs, std::int64_t position)
{
    for (int i = 0; i < pairs; ++i) {
        const float angle = static_cast<float>(position) * freqs[i];
        const float c = std::cos(angle);
        const float s = std::sin(angle);
        const float a = x[i];
        const float b = x[i + pairs];
        x[i] = a * c - b * s;
        x[i + pairs] = a * s + b * c;
    }
}

} // namespace mla
