#pragma once

#include "engine/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace mla {

class ComputeBackend;

struct GenerationOptions {
    std::int64_t steps = 256;   // positions to run, BOS and prompt included (llama2.c's meaning)
    float temperature = 0.0f;  // 0: greedy
    float topP = 0.9f;
    std::uint64_t seed = 42;
};

struct GenerationResult {
    std::vector<int> ids;   // generated ids only: not BOS, not the prompt, not the stop token
    std::string text;       // their decoded text (empty without a tokenizer)
    double seconds = 0.0;
    double tokensPerSecond = 0.0;
    double kvBytesPerToken = 0.0;     // measured from the cache allocated for this run
    std::int64_t kvElementsPerToken = 0;
    std::int64_t cacheCapacity = 0;
    std::string stopReason;           // "steps", "bos", "eos" or "context"
};

// The ids a generation starts from: BOS (when the model or tokenizer defines one), then the prompt's tokens.
std::vector<int> promptIds(const ModelConfig& config, const Tokenizer* tokenizer, const std::string& prompt);

// Generates like llama2.c: the prompt is consumed, then tokens are sampled until `steps` positions have run or the
// model emits BOS or EOS. `onToken` (optional) receives each generated id as it comes. The decoder runs on `backend`.
GenerationResult generate(const ComputeBackend& backend, const Transformer& transformer, const Tokenizer* tokenizer, const std::vector<int>& prompt,
                          const GenerationOptions& options, const std::function<void(int id)>& onToken = {},
                          const JobControl& job = {});

// Generates one sequence per seed from the same prompt, all decoded side by side (backend.batchDecoderSession): one
// step samples the next token of every sequence still running from one batched forward. Result i holds exactly what
// generate(...) with options.seed = seeds[i] returns (ids, stop reason, text): each sequence has its own sampler
// stream and the CPU's batched step gives each row the logits of a single-sequence step bit for bit. Sequences run in
// batches of at most `maxBatch` (0: as many as keep their KV caches within min(1 GiB, a quarter of the memory
// available)). seconds and tokensPerSecond are those of the batch a sequence ran in. Reports progress (the fraction
// of the positions run) and honours cancellation every step. With `observer` (a backend whose batched decode is
// observable, a one-token prompt, and a position left for the last token) every token of every result, the prompt
// and the last sampled token included, is shown to it exactly once, layer by layer, as the steps run it (the last
// tokens in one extra step without the output head): a job that measures the model on its own samples (sampled
// calibration) needs no second forward pass over them.
std::vector<GenerationResult> generateBatch(const ComputeBackend& backend, const Transformer& transformer, const Tokenizer* tokenizer,
                                            const std::vector<int>& prompt, const GenerationOptions& options,
                                            std::span<const std::uint64_t> seeds, const JobControl& job = {}, std::int64_t maxBatch = 0,
                                            ForwardObserver* observer = nullptr);

// The batch size generateBatch uses for `sequences` sequences of `positions` positions when not told.
std::int64_t generationBatchSize(const Transformer& transformer, std::int64_t sequences, std::int64_t positions);

} // namespace mla
