#pragma once

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

#include <string>
#include <string_view>
#include <vector>

namespace mla {

class ComputeBackend;

// Continuations of one prompt by the original and the converted model, side by side (greedy, or sampled with the same
// seed for both).
struct GenerationComparison {
    std::string prompt;           // as given: text, or token ids when SanityOptions::promptsAreIds
    std::vector<int> originalIds, convertedIds;
    std::string originalText, convertedText;
    std::int64_t firstDifference = -1; // index of the first differing id, -1 when identical
    std::vector<int> startIds{};  // what both generations started from: BOS (when defined), then the prompt's ids
    std::int64_t unknownTokens = 0; // prompt tokens the tokenizer could not represent (its <unk>): the text is not what was written
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
    bool promptsAreIds = false;           // each prompt is token ids ("1 403 22"): works without a tokenizer
    std::int64_t generationSteps = 64;
    float temperature = 0.0f;             // 0: greedy; else both models sample with the same seed
    float topP = 0.9f;
    std::uint64_t samplingSeed = 42;
    KvCacheFormat cacheFormat;             // the converted model's cache format to report next to float32
};

// The ids of a prompt written as token ids, separated by spaces or commas ("1 403 22", "1, 403, 22"). Throws Error
// naming the entry that is not an id in [0, vocab).
std::vector<int> parsePromptIds(std::string_view text, std::int64_t vocab);
// How many tokens of `prompt` come out as the tokenizer's unknown token (0 when it has none).
std::int64_t unknownPromptTokens(const Tokenizer& tokenizer, std::string_view prompt);
// The ids a comparison starts from: BOS (the model's or the tokenizer's) and the prompt, as text or as ids. Throws
// Error when a text prompt has no tokenizer, an id is out of range, or there is nothing to start from.
std::vector<int> sanityStartIds(const ModelConfig& config, const Tokenizer* tokenizer, const std::string& prompt, bool promptIsIds);

// Both models run on `backend`.
SanityReport runSanityCheck(const ComputeBackend& backend, const Transformer& original, const Transformer& converted, const Tokenizer* tokenizer,
                            const TokenSequences& evaluation, const SanityOptions& options, const JobControl& job = {});

} // namespace mla
