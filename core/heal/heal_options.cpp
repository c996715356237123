#include "heal/heal_options.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

void require(bool ok, const std::string& what)
{
    if (!ok)
        throw Error("heal: " + what);
}

bool finite(double v)
{
    return std::isfinite(v);
}

std::string number(double v)
{
    if (std::isnan(v))
        return "NaN";
    return std::to_string(v);
}

} // namespace

void validateHealOptions(const HealOptions& o)
{
    require(o.steps >= 1, "the number of steps per layer must be at least 1 (got " + std::to_string(o.steps) + ")");
    require(o.steps <= 10'000'000, "the number of steps per layer is too large (got " + std::to_string(o.steps) + ")");
    if (o.learningRate)
        require(finite(*o.learningRate) && *o.learningRate > 0.0,
                "the learning rate must be a positive finite number (got " + number(*o.learningRate) + ")");
    require(finite(o.relativeLearningRate) && o.relativeLearningRate > 0.0,
            "the relative learning rate must be a positive finite number (got " + number(o.relativeLearningRate) + ")");
    require(finite(o.warmupFraction) && o.warmupFraction >= 0.0 && o.warmupFraction < 1.0,
            "the warm-up fraction must be in [0, 1) (got " + number(o.warmupFraction) + ")");
    require(finite(o.finalLearningRateFraction) && o.finalLearningRateFraction >= 0.0 && o.finalLearningRateFraction <= 1.0,
            "the final learning-rate fraction must be in [0, 1] (got " + number(o.finalLearningRateFraction) + ")");
    require(finite(o.weightDecay) && o.weightDecay >= 0.0, "the weight decay must be a non-negative finite number (got " + number(o.weightDecay) + ")");
    require(finite(o.beta1) && o.beta1 >= 0.0 && o.beta1 < 1.0, "beta1 must be in [0, 1) (got " + number(o.beta1) + ")");
    require(finite(o.beta2) && o.beta2 >= 0.0 && o.beta2 < 1.0, "beta2 must be in [0, 1) (got " + number(o.beta2) + ")");
    require(finite(o.epsilon) && o.epsilon > 0.0, "epsilon must be a positive finite number (got " + number(o.epsilon) + ")");
    require(finite(o.clipNorm) && o.clipNorm >= 0.0, "the gradient clip norm must be a non-negative finite number (got " + number(o.clipNorm) + ")");
    require(o.batchSequences >= 1, "the batch must hold at least 1 sequence (got " + std::to_string(o.batchSequences) + ")");
    require(finite(o.heldOutFraction) && o.heldOutFraction > 0.0 && o.heldOutFraction < 1.0,
            "the held-out fraction must be in (0, 1) (got " + number(o.heldOutFraction) + ")");
    require(o.evaluateEvery >= 0, "the held-out evaluation interval must not be negative (got " + std::to_string(o.evaluateEvery) + ")");
    require(o.patience >= 0, "the patience must not be negative (got " + std::to_string(o.patience) + ")");
    require(o.data.tokens >= 4, "at least 4 healing tokens are needed (got " + std::to_string(o.data.tokens) + ")");
    require(o.data.sequenceLength >= 2, "healing sequences need at least 2 tokens (got " + std::to_string(o.data.sequenceLength) + ")");
    require(std::isfinite(o.data.temperature) && o.data.temperature > 0.0f,
            "the sampling temperature must be a positive finite number (got " + number(o.data.temperature) + ")");
    if (o.data.source != CalibrationOptions::Source::Samples)
        require(!o.data.file.empty(), "healing from " + calibrationSourceName(o.data.source) + " needs a file");
}

heal::AdamWSettings adamWSettings(const HealOptions& o, double learningRate)
{
    heal::AdamWSettings s;
    s.learningRate = learningRate;
    s.steps = o.steps;
    s.warmupFraction = o.warmupFraction;
    s.finalFraction = o.finalLearningRateFraction;
    s.beta1 = o.beta1;
    s.beta2 = o.beta2;
    s.epsilon = o.epsilon;
    s.weightDecay = o.weightDecay;
    s.clipNorm = o.clipNorm;
    return s;
}

std::int64_t evaluationInterval(const HealOptions& o)
{
    return o.evaluateEvery > 0 ? o.evaluateEvery : std::max<std::int64_t>(1, o.steps / 20);
}

std::string healCancelPolicyName(HealCancelPolicy p)
{
    return p == HealCancelPolicy::KeepHealedLayers ? "keep" : "discard";
}

} // namespace mla
