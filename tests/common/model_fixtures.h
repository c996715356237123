#pragma once

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "model/model.h"

#include <filesystem>
#include <string>

namespace mla::test {

// The real checkpoints the tests use, by name: "stories260K" (.bin, GQA), "stories260K-hf", "stories260K-gguf",
// "aidreams260K" (.bin, MHA), "aidreams260K-hf", "poem5L" (MHA), "xs260K" (GQA).
std::filesystem::path realModelPath(const std::string& name);
Model loadRealModel(const std::string& name);

// `count` sequences of `length` tokens sampled from the model (BOS first), deterministic for a seed.
TokenSequences sampleSequences(const Transformer& model, int count, int length, std::uint64_t seed, float temperature = 1.0f);

// A tiny two-layer GQA config (hidden 36, not a multiple of 8; 6 heads of 6 dims, 2 KV heads; vocabulary 40 with
// BOS 1 and EOS 2) for random models, in the variants "llama", "qwen2" (q/k/v biases), "qwen3" (q/k norms), "mistral"
// (a sliding window of 5) and "mha" (untied, every bias).
ModelConfig tinyConfig(const std::string& variant);

// Logits [T, vocab] of one sequence.
MatrixRM sequenceLogits(const Transformer& model, const std::vector<int>& ids);
MatrixRM logitsOf(const Model& model, const std::vector<int>& ids);

} // namespace mla::test
