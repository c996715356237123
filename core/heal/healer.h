#pragma once

#include "heal/heal_data.h"
#include "heal/heal_options.h"
#include "model/model.h"
#include "util/job_control.h"

#include <functional>
#include <optional>
#include <vector>

namespace mla {

// What healing did to one layer. Losses are the block-output MSE on the held-out sequences (divided by the mean
// squared target when options.normaliseLoss), with the layers before it already healed.
struct LayerHealReport {
    std::int64_t layer = 0;
    double heldOutBefore = 0.0;
    double heldOutAfter = 0.0;      // of the weights kept (the best held-out evaluation; the start if none was better)
    double trainLossFirst = 0.0;    // first and last training-batch losses
    double trainLossLast = 0.0;
    double learningRate = 0.0;      // the peak learning rate used
    std::int64_t steps = 0;         // steps run
    std::int64_t bestStep = 0;      // the step whose weights were kept; 0: the starting weights
    bool stoppedEarly = false;      // the held-out loss stopped improving
    bool diverged = false;          // a training loss was not finite; the best weights before it were kept
    double seconds = 0.0;
};

// The converted model against the original on the held-out sequences.
struct HealQuality {
    double kl = 0.0;            // mean KL(original || model) per token, nats
    double perplexity = 0.0;
    double originalPerplexity = 0.0;
    double top1Agreement = 0.0;
    std::int64_t positions = 0;
};

struct HealReport {
    std::vector<LayerHealReport> layers;   // the layers finished (all, unless cancelled)
    std::optional<HealQuality> before;     // options.measureModel
    std::optional<HealQuality> after;
    std::string dataDescription;
    std::int64_t trainTokens = 0;
    std::int64_t heldOutTokens = 0;
    std::int64_t layersHealed = 0;         // layers whose healed weights are in the model
    bool cancelled = false;
    double seconds = 0.0;
};

struct HealResult {
    Model model;     // the converted model with its healed layers (trained tensors owned, float32)
    HealReport report;
};

// One training step or held-out evaluation, for live plots.
struct HealProgress {
    std::int64_t layer = 0;
    std::int64_t step = 0;
    std::int64_t steps = 0;
    double trainLoss = 0.0;             // of this step's batch (step 0: the starting held-out loss)
    std::optional<double> heldOutLoss;  // set on evaluation steps and on step 0
    double learningRate = 0.0;
    std::size_t start = 0;              // which start is being healed (chooseHealStart's candidate index; else 0)
    std::optional<LayerHealReport> finished; // set once, when the layer is done (then heldOutLoss is its kept loss)
};
using HealObserver = std::function<void(const HealProgress&)>;

// Sequential block-wise distillation (docs/healing.md). For layer 0..L-1 in order: the block's inputs are the hidden
// states the converted model itself produces at that layer (earlier layers already healed), its targets the original
// model's hidden states after that layer; the layer's converted attention (and its norms when asked) is trained
// with AdamW to bring the block output to the target, the weights with the lowest held-out loss are kept (the start
// when nothing was better), and the layer is frozen. Runs on the CPU on all cores; with the same options, data
// and machine the healed weights are the same bit for bit, whatever the thread count.
//
// Cancellation (JobControl) returns with report.cancelled set and, per options.onCancel, the layers finished so far
// or none of them; the layer in progress is never half installed. Bad options, mismatched models or data are an
// Error before any work.
HealResult healModel(const Model& original, const Model& converted, const HealData& data, const HealOptions& options,
                     const JobControl& job = {}, const HealObserver& observer = {});

// KL / perplexity / top-1 of `model` against `original` on `sequences` (the decode form: absorbed latent cache).
HealQuality measureHealQuality(const Model& original, const Model& model, const TokenSequences& sequences,
                               const JobControl& job = {});

} // namespace mla
