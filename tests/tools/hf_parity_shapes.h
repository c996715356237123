#pragma once

// Tiny random models of every supported architecture, each with the feature that sets it apart: llama with llama3
// RoPE scaling, mistral with a sliding window shorter than the test sequence, qwen2 with q/k/v biases, qwen3 with
// per-head q/k norms. Used by the CUDA parity test (CPU vs GPU) and by tests/tools/hf_parity_prepare (our CPU logits
// against Hugging Face transformers, docs/hf-parity.md).
#include "formats/checkpoint_writer.h"
#include "formats/synthetic_checkpoint.h"
#include "model/tensor_plan.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace mla::test {

inline ModelConfig tinyConfig(const char* architecture)
{
    ModelConfig c;
    c.architecture = architecture;
    c.hidden = 64;
    c.ffn = 160;
    c.layers = 2;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 16;
    c.vocab = 256;
    c.maxPositions = 256;
    c.rope.theta = 10000.0;
    c.rmsEps = 1e-5;
    c.tieEmbeddings = false;
    c.bosId = 1;
    c.eosIds = {2};
    return c;
}

inline std::vector<SyntheticShape> tinyShapes()
{
    std::vector<SyntheticShape> shapes;
    ModelConfig llama = tinyConfig("llama");
    llama.rope.theta = 500000.0;
    llama.rope.scaling = RopeScaling::Llama3;
    llama.rope.factor = 8.0;
    llama.rope.lowFreqFactor = 1.0;
    llama.rope.highFreqFactor = 4.0;
    llama.rope.originalMaxPositions = 64;
    shapes.push_back({"tiny-llama3", "llama, GQA 4:2, llama3 RoPE scaling", llama});
    ModelConfig mistral = tinyConfig("mistral");
    mistral.slidingWindow = 16;
    shapes.push_back({"tiny-mistral", "mistral, GQA 4:2, sliding window 16", mistral});
    ModelConfig qwen2 = tinyConfig("qwen2");
    qwen2.qkvBias = true;
    qwen2.tieEmbeddings = true;
    qwen2.rmsEps = 1e-6;
    shapes.push_back({"tiny-qwen2", "qwen2, GQA 4:2, q/k/v biases, tied embeddings", qwen2});
    ModelConfig qwen3 = tinyConfig("qwen3");
    qwen3.qkNorm = true;
    qwen3.rmsEps = 1e-6;
    shapes.push_back({"tiny-qwen3", "qwen3, GQA 4:2, q/k norms", qwen3});
    return shapes;
}

// Writes `shape` with reproducible uniform random weights of the given amplitude (larger than the synthetic
// checkpoints' 0.02, so that attention is far from uniform and RoPE, masks and norms all move the logits), norms at
// 1 +- 0.2 and biases at the same amplitude as the weights.
inline void writeTinyCheckpoint(const SyntheticShape& shape, const std::filesystem::path& folder, DType dtype = DType::F32,
                                float amplitude = 0.25f, std::uint64_t seed = 7)
{
    CheckpointWriter writer(folder, shape.config, configToHuggingFace(shape.config), dtype);
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<float>(static_cast<double>(state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
    };
    std::vector<float> values;
    writer.writeTensors([&](const PlannedTensor& p, const std::string&) {
        std::int64_t count = 1;
        for (auto d : p.shape)
            count *= d;
        values.resize(static_cast<std::size_t>(count));
        const bool norm = p.role == TensorRole::AttnNorm || p.role == TensorRole::FfnNorm || p.role == TensorRole::OutputNorm
                          || p.role == TensorRole::QNorm || p.role == TensorRole::KNorm;
        for (auto& v : values)
            v = norm ? 1.0f + 0.2f * next() : amplitude * next();
        return Tensor::fromFloats(DType::F32, p.shape, values.data());
    });
    writer.commit();
}

// The id sequence every parity check runs (longer than the mistral window).
inline std::vector<int> paritySequence()
{
    std::vector<int> ids{1};
    for (int i = 0; i < 47; ++i)
        ids.push_back(3 + (i * 37 + 11) % 250);
    return ids;
}

} // namespace mla::test
