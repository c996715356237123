#pragma once

#include "analysis/calibration.h"
#include "heal/adamw.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace mla {

// What a cancelled heal leaves: the layers healed before the cancel (each layer is installed only once it is
// finished, so the model is consistent) or none of them (the converted model as it was).
enum class HealCancelPolicy { KeepHealedLayers, DiscardAll };

// Where the healing sequences come from (CLI: default samples, --heal-text FILE, --heal-ids FILE).
struct HealDataOptions {
    CalibrationOptions::Source source = CalibrationOptions::Source::Samples;
    std::filesystem::path file;          // Text / Ids
    std::int64_t tokens = 32768;         // at most this many tokens in all (samples: drawn until they hold them)
    std::int64_t sequenceLength = 256;   // capped at the model's context
    float temperature = 1.0f;            // Samples
};

// Block-wise distillation settings (docs/healing.md). Defaults are those measured in docs/results.md.
struct HealOptions {
    std::int64_t steps = 200;            // AdamW steps per layer (an upper bound: a layer may stop early)
    // Peak AdamW learning rate (after the warm-up). When not set, each layer uses relativeLearningRate times the RMS
    // of its query weights, so that one default fits models whose weights differ in scale (0.08 to 0.45 in the real
    // test models, about 0.02 in a 7B model).
    std::optional<double> learningRate;
    double relativeLearningRate = 0.1;
    double warmupFraction = 0.1;
    double finalLearningRateFraction = 0.1;
    double weightDecay = 0.0;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double epsilon = 1e-8;
    double clipNorm = 1.0;               // global gradient 2-norm; 0: off
    std::int64_t batchSequences = 8;     // sequences per step
    std::uint64_t seed = 1;              // batch order and sampled data
    bool normaliseLoss = true;           // divide each layer's MSE by the mean squared target (losses comparable across layers)
    bool trainNorms = false;             // also train the block's two RMSNorm weights
    double heldOutFraction = 0.125;      // of the sequences, never trained on
    std::int64_t evaluateEvery = 0;      // steps between held-out evaluations; 0: steps / 20 (at least 1)
    std::int64_t patience = 8;           // evaluations without improvement before a layer stops; 0: never stop early
    HealCancelPolicy onCancel = HealCancelPolicy::KeepHealedLayers;
    bool measureModel = true;            // KL / perplexity / top-1 against the original before and after
    HealDataOptions data;
};

// Throws an Error naming the first invalid setting (zero steps, a learning rate that is not a positive finite
// number, ...), so that bad input is refused before any work.
void validateHealOptions(const HealOptions& options);

// The optimiser settings of a layer trained at `learningRate`.
heal::AdamWSettings adamWSettings(const HealOptions& options, double learningRate);

// The steps between held-out evaluations (evaluateEvery, or steps / 20 when it is 0): the early stop scales with the
// schedule, so that a long cosine schedule is not cut on a plateau before its learning rate has come down.
std::int64_t evaluationInterval(const HealOptions& options);

std::string healCancelPolicyName(HealCancelPolicy policy); // "keep" or "discard"

} // namespace mla
