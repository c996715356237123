#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mla {

namespace {

// Hugging Face's _compute_yarn_parameters: frequencies interpolated by `factor` below the correction range,
// extrapolated (kept) above it, with a linear ramp between; float32 where it computes in float32.
std::vector<float> yarnFrequencies(const RopeConfig& rope, std::int64_t dim)
{
    const double base = rope.theta;
    auto correctionDim = [&](double rotations) {
        return static_cast<double>(dim) * std::log(static_cast<double>(rope.originalMaxPositions) / (rotations * 2.0 * std::numbers::pi))
               / (2.0 * std::log(base));
    };
    double low = correctionDim(rope.betaFast);
    double high = correctionDim(rope.betaSlow);
    if (rope.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high)
        high += 0.001; // as Hugging Face: prevents a division by zero
    const float factor = static_cast<float>(rope.factor);
    std::vector<float> freqs(static_cast<std::size_t>(dim / 2));
    for (std::int64_t j = 0; j < dim / 2; ++j) {
        const float posFreq = std::pow(static_cast<float>(base), static_cast<float>(2 * j) / static_cast<float>(dim));
        const float extrapolation = 1.0f / posFreq;
        const float interpolation = 1.0f / (factor * posFreq);
        const float ramp = std::clamp((static_cast<float>(j) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f, 1.0f);
        const float keep = 1.0f - ramp;
        freqs[static_cast<std::size_t>(j)] = interpolation * (1.0f - keep) + extrapolation * keep;
    }
    return freqs;
}

} // namespace

std::vector<float> ropeFrequencies(const RopeConfig& rope, std::int64_t headDim)
{
    if (rope.scaling == RopeScaling::Yarn)
        return yarnFrequencies(rope, headDim);
    const std::int64_t pairs = headDim / 2;
    std::vector<float> freqs(static_cast<std::size_t>(pairs));
    for (std::int64_t j = 0; j < pairs; ++j) {
        // Hugging Face: 1 / base ** (arange(0, dim, 2).float() / dim), evaluated in float32.
        const float exponent = static_cast<float>(2 * j) / static_cast<float>(headDim);
        float w = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
        switch (rope.scaling) {
        case RopeScaling::None:
            break;
        case RopeScaling::Yarn: // handled above
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
