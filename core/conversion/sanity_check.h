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

// The converted model's quality with its KV cache stored in a given format, against the original as in SanityReport.
struct CacheFormatQuality {
    std::string format = "f32"; // kvCacheFormatName
    double ppl = 0.0;
    double kl = 0.0;             // mean KL(original || converted with this cache) per token, nats
    double top1Agreement = 0.0;
    double kvBytesPerToken = 0.0; // measured from the caches allocated for it
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
    // The figures above run both models with a float32 cache; these with the cache format the check was asked for
    // (SanityOptions::cacheFormat; the same numbers when that is f32), and the original with a BF16 cache, the usual
    // baseline of a deployment, to give the saving of MLA and cache quantisation together.
    CacheFormatQuality withCache;
    double originalBf16KvBytesPerToken = 0.0; // measured
    double combinedSaving() const;            // 1 - withCache.kvBytesPerToken / originalBf16KvBytesPerToken
};

struct SanityOptions {
    std::vector<std::string> prompts{""}; // "" starts from BOS alone
    std::int64_t generationSteps = 64;
    KvCacheFormat cacheFormat;             // the converted model's cache format to report next to float32
};

// Both models run on `backend`.
SanityReport runSanityCheck(const ComputeBackend& backend, const Transformer& original, const Transformer& converted, const Tokenizer* tokenizer,
                            const TokenSequences& evaluation, const SanityOptions& options, const JobControl& job = {});

} // namespace mla
