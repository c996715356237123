#pragma once

#include "model/model_config.h"
#include "tensor/tensor.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mla {

// Weights of one decoder layer. Matrices stay in their stored dtype (usually views into a memory-mapped file);
// vectors (norms, biases) are small and held as float32. An absent optional tensor is empty / size 0.
// Query and key rows are always in the internal "half" RoPE layout (pair j = dims (j, j + d_h/2) of each head),
// whatever layout the file used (docs/rope-layout.md).
struct LayerWeights {
    VectorF attnNorm;
    Tensor q, k, v, o;
    VectorF qBias, kBias, vBias, oBias;
    VectorF qNorm, kNorm;
    VectorF ffnNorm;
    Tensor gate, up, down;
    VectorF gateBias, upBias, downBias;

    // Multi-head Latent Attention (config.mla set). `q` then holds the reordered query rows: first every head's
    // kept RoPE dims, then every head's position-free dims (MHA2MLA layout); k and v are empty.
    Tensor kRope;
    VectorF kRopeBias;
    Tensor downKv, downK, downV; // the latent projection(s); which are present depends on the method
    Tensor upK, upV;             // act on the latent, or on the hidden state when that side is not compressed
    VectorF upKBias, upVBias;

    // DeepSeek-V2/V3 attention (config.deepseek set): `q` holds q_proj (per head: nope dims, then rope dims) unless
    // the query goes through its own latent (qA, qANorm, qB); k and v are empty. Tensors are kept as stored, the
    // rope part in the file's pair layout (interleaved or half, config.deepseek->ropeInterleave).
    Tensor qA, qB;     // q_a_proj [qLoraRank, hidden], q_b_proj [heads * (nope + rope), qLoraRank]
    Tensor kvA;        // kv_a_proj_with_mqa [kvLoraRank + rope, hidden]
    Tensor kvB;        // kv_b_proj [heads * (nope + value), kvLoraRank]
    VectorF qABias, qANorm, kvABias, kvANorm;

    std::int64_t parameterCount() const;
};

struct Model {
    ModelConfig config;
    Tensor embedding; // [vocab, hidden]
    Tensor output;    // [vocab, hidden]; the embedding itself when tied
    VectorF outputNorm;
    std::vector<LayerWeights> layers;

    std::filesystem::path source;      // what was opened
    std::string format;                // "safetensors", "llama2c" or "gguf"
    std::string sourceRopeLayout;      // "half" or "interleaved": how the file stored query/key rows
    std::uint64_t fileBytes = 0;       // bytes of the checkpoint file(s)
    std::optional<nlohmann::json> sourceConfigJson; // the original config.json, for export
    std::optional<EmbeddedVocabulary> embeddedVocabulary; // GGUF

    std::int64_t parameterCount() const;
    std::int64_t weightBytes() const;  // bytes of all weight tensors as stored
};

} // namespace mla
