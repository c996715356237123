#pragma once

#include "engine/evaluation.h"
#include "engine/generator.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mla::pipeline {

// Token sequences to evaluate on: an ids file used exactly as given (checked against the model's vocabulary: an id
// outside it is an error naming the file and the sequence), or a text file tokenised by the model's tokenizer and cut
// into windows of `length` tokens that each start with BOS.
TokenSequences evaluationIds(const OpenedModel& model, const std::filesystem::path& file);
TokenSequences evaluationText(const OpenedModel& model, const std::filesystem::path& file, std::int64_t length);

struct EvaluationOutcome {
    PerplexityResult perplexity;              // of the model (without a reference)
    std::optional<ComparisonResult> comparison; // against the reference, when one was given
};

// Evaluate (CLI eval): perplexity of `model` on the sequences, or with a reference its KL divergence and top-1
// agreement too. `cacheFormat` is how the model's KV cache is stored (the reference's stays float32).
EvaluationOutcome evaluate(const OpenedModel& model, const TokenSequences& sequences, const OpenedModel* reference,
                           const ExecutionContext& context, const KvCacheFormat& cacheFormat = {});

// The ids a generation starts from: BOS (when the model or its tokenizer defines one), then the prompt's tokens.
std::vector<int> startIds(const OpenedModel& model, const std::string& prompt);

// Generate (CLI generate): text from `start` (startIds), like llama2.c. `onToken` receives each id as it comes.
// `cacheFormat`: how the KV cache is stored (GenerationResult::kvBytesPerToken is what it allocated).
GenerationResult generateText(const OpenedModel& model, MlaForm form, const std::vector<int>& start, const GenerationOptions& options,
                              const std::function<void(int id)>& onToken, const ExecutionContext& context,
                              const KvCacheFormat& cacheFormat = {});

} // namespace mla::pipeline
