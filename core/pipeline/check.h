#pragma once

#include "conversion/sanity_check.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"

#include <string>
#include <vector>

namespace mla::pipeline {

// What the sanity check runs. The defaults are the CLI's convert --check; the workbench sets its own (its prompt,
// more generation steps).
struct CheckOptions {
    std::vector<std::string> prompts{""}; // generations start from BOS + each prompt ("" = BOS alone)
    bool promptsAreIds = false;           // prompts are token ids ("1 403 22"), for a model without a tokenizer
    std::int64_t generationSteps = 32;
    float temperature = 0.0f;             // 0: greedy; else both models sample with samplingSeed
    float topP = 0.9f;
    std::uint64_t samplingSeed = 42;
    std::int64_t sequences = 4;           // evaluation text sampled from the original model
    std::int64_t sequenceLength = 128;    // capped at the model's context
    std::uint64_t seed = 7919;            // not the calibration's default seed, so the text is held out
    KvCacheFormat cacheFormat;            // the converted model's KV cache format, measured next to float32 (--kv-cache)
};

struct CheckOutcome {
    SanityReport report;
    std::string description; // what was measured: "4 samples of ... (seed 7919), 508 predicted tokens"
};

// Check (the workbench's Sanity Check, the CLI's convert --check): the converted model against the original on text
// sampled from the original (perplexities, KL, top-1 agreement), measured KV bytes and side-by-side generations. The
// prompts are checked (token ids in range, a tokenizer for text) before any work.
CheckOutcome check(const OpenedModel& original, const Model& converted, const CheckOptions& options, const ExecutionContext& context);

} // namespace mla::pipeline
