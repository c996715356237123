#include "conversion/decomposition_check.h"

#include "conversion/layer_converter.h"
#include "util/number_text.h"

#include <chrono>
#include <cmath>

namespace mla {
namespace {

struct Measured {
    double relativeError = 0.0;
    double seconds = 0.0;
};

Measured decompose(const ComputeBackend& backend, const ModelConfig& config, const LayerWeights& layer, const MlaLayerConfig& target,
                   const ConversionSettings& settings, const MatrixXdRM* covariance, const JobControl& job)
{
    AttentionConversionShortcuts shortcuts;
    shortcuts.relativeErrors = false; // the weight-space errors are not what is compared
    const auto start = std::chrono::steady_clock::now();
    const ConvertedAttention a = convertAttention(backend, config, layer, target, settings, covariance, job, shortcuts);
    Measured m;
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    m.relativeError = a.factorSquaredNorm > 0.0 ? std::sqrt(a.factorSquaredResidual / a.factorSquaredNorm) : 0.0;
    return m;
}

} // namespace

double DecompositionCheck::excess() const
{
    return exactRelativeError > 0.0 ? randomizedRelativeError / exactRelativeError - 1.0 : 0.0;
}

double DecompositionCheck::speedup() const
{
    return randomizedSeconds > 0.0 ? exactSeconds / randomizedSeconds : 0.0;
}

DecompositionCheck checkDecomposition(const ComputeBackend& backend, const ModelConfig& config, std::int64_t layerIndex,
                                      const LayerWeights& layer, const MlaLayerConfig& target, const ConversionSettings& settings,
                                      const MatrixXdRM* covariance, const JobControl& job)
{
    ConversionSettings randomized = settings;
    randomized.decomposition = DecompositionMethod::Randomized;
    randomized.activationAware = settings.activationAware && covariance;
    ConversionSettings exact = randomized;
    exact.decomposition = DecompositionMethod::Exact;

    DecompositionCheck check;
    check.layer = layerIndex;
    check.powerIterations = settings.powerIterations;
    check.whitened = randomized.activationAware;
    // The randomized one first: a cancelled check has spent the cheaper half.
    const Measured r = decompose(backend, config, layer, target, randomized, covariance, job.slice(0.0, 0.4));
    const Measured e = decompose(backend, config, layer, target, exact, covariance, job.slice(0.4, 1.0));
    check.randomizedRelativeError = r.relativeError;
    check.randomizedSeconds = r.seconds;
    check.exactRelativeError = e.relativeError;
    check.exactSeconds = e.seconds;
    return check;
}

std::string decompositionCheckSummary(const DecompositionCheck& c)
{
    return "randomized decomposition (" + std::to_string(c.powerIterations) + " power iteration" + (c.powerIterations == 1 ? "" : "s")
           + ") checked on layer " + std::to_string(c.layer) + (c.whitened ? "" : " in weight space") + ": relative error "
           + significantDigits(c.randomizedRelativeError, 4) + " against the exact " + significantDigits(c.exactRelativeError, 4) + " ("
           + fixedDigits(100.0 * c.excess(), 2) + "% above), " + fixedDigits(c.randomizedSeconds, 2) + " s against "
           + fixedDigits(c.exactSeconds, 2) + " s ("
           + (c.speedup() >= 1.0 || c.speedup() <= 0.0 ? fixedDigits(c.speedup(), 2) + "x faster)"
                                                       : fixedDigits(1.0 / c.speedup(), 2) + "x slower)");
}

nlohmann::ordered_json decompositionCheckJson(const DecompositionCheck& c)
{
    return {{"layer", c.layer},
            {"power_iterations", c.powerIterations},
            {"whitened", c.whitened},
            {"exact_relative_error", c.exactRelativeError},
            {"randomized_relative_error", c.randomizedRelativeError},
            {"excess", c.excess()},
            {"exact_seconds", c.exactSeconds},
            {"randomized_seconds", c.randomizedSeconds},
            {"speedup", c.speedup()}};
}

} // namespace mla
