#pragma once

#include "engine/transformer.h"
#include "util/job_control.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mla {

class ComputeBackend;

using TokenSequences = std::vector<std::vector<int>>;

// A file of token ids: one sequence per line, whitespace-separated non-negative integers, used exactly as given.
// Blank lines are skipped. Errors name the file and line.
TokenSequences readIdSequences(const std::filesystem::path& path);
// Sequences of at most `length` ids cut from one long id stream (the last, shorter piece kept if it has >= 2 ids).
TokenSequences splitIntoSequences(const std::vector<int>& ids, std::int64_t length);

struct PerplexityResult {
    double nll = 0.0;          // summed negative log-likelihood, nats
    std::int64_t tokens = 0;   // predicted tokens
    double kvBytesPerToken = 0.0; // of the caches the evaluation allocated (the model's cache format)
    double ppl() const;
    double meanNll() const;
};

// Perplexity of next-token prediction over each sequence (sequences longer than the model's context are evaluated
// in consecutive windows of that length), on `backend`.
PerplexityResult perplexity(const ComputeBackend& backend, const Transformer& model, const TokenSequences& sequences, const JobControl& job = {});

struct ComparisonResult {
    PerplexityResult model;
    PerplexityResult reference;
    double kl = 0.0;            // mean over tokens of KL(reference || model), nats
    double top1Agreement = 0.0; // fraction of positions where both argmax ids agree
    std::int64_t positions = 0;
};

// Runs both models on the same sequences and compares their next-token distributions position by position.
ComparisonResult compareModels(const ComputeBackend& backend, const Transformer& model, const Transformer& reference, const TokenSequences& sequences,
                               const JobControl& job = {});

} // namespace mla
