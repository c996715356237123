#pragma once

#include "model/model.h"

#include <filesystem>
#include <string>
#include <vector>

namespace mla::test {

// A small DeepSeek-V2/V3 model with random weights, in any of the shapes the stock engines read.
struct DeepSeekShape {
    std::string architecture = "deepseek_v3";
    std::int64_t hidden = 32, layers = 2, heads = 4, nope = 6, rope = 4, value = 5, kvLora = 12, qLora = 0;
    std::int64_t ffn = 48, vocab = 96, maxPositions = 64;
    bool interleave = true;
    bool bias = false; // attention_bias: q_a_proj, kv_a_proj_with_mqa and o_proj biases (transformers reads them)
    RopeConfig ropeConfig = {};
};

Model randomDeepSeekModel(const DeepSeekShape& shape, std::uint64_t seed);
// Random weights (Gaussian, scaled by 1/sqrt(fan-in); norms near 1) for every tensor `config` plans.
Model randomModel(const ModelConfig& config, std::uint64_t seed);

// Writes `model` as a Hugging Face folder, then ids.txt and logits.f32 (our engine's float32 logits [T, vocab] of `ids`
// on the folder as written), the input of tests/tools/deepseek_reference.py.
void writeReferenceFixture(const Model& model, const std::filesystem::path& folder, const std::vector<int>& ids);

// Runs tests/tools/deepseek_reference.py on the folders; false with the reason in `why` when python3 with numpy is
// missing (then `skipped` is set) or when the reference disagrees.
bool runDeepSeekReference(const std::vector<std::filesystem::path>& folders, std::string& output, bool& skipped);

} // namespace mla::test
