#pragma once

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

#include <string>
#include <vector>

namespace mla {

class ComputeBackend;

// Greedy continuations of one prompt by the original and the converted model, side by side.
struct GenerationComparison {
    std::string prompt;
    std::vector<int> originalIds, convertedIds;
    std::string originalText, convertedText;
    std::int64_t firstDifference = -1; // index of the first differing id, -1 when identical
};

// The quick check after a conversion (mission step 4).
struct SanityReport {
    double originalPpl = 0.0;
    double convertedPpl = 0.0;
    double kl = 0.0;              // mean KL(original || converted) per token, nats
    double top1Agreement = 0.0;
    std::int64_t evaluatedTokens = 0;
    double originalKvBytesPerToken = 0.0;  // measured from the caches allocated for the generations
    double convertedKvBytesPerToken = 0.0;
    std::vector<GenerationComparison> generations;
};

struct SanityOptions {
    std::vector<std::string> prompts{""}; // "" starts from BOS alone
    std::int64_t generationSteps = 64;
};

// Both models run on `backend`.
SanityReport runSanityCheck(const ComputeBackend& backend, const Transformer& original, const Transformer& converted, const Tokenizer* tokenizer,
                            const TokenSequences& evaluation, const SanityOptions& options, const JobControl& job = {});

} // namespace mla
