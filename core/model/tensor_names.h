#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mla {

// What a tensor is for, independent of the file format that names it.
enum class TensorRole {
    Embedding, OutputNorm, Output,
    AttnNorm, Q, K, V, O, QBias, KBias, VBias, OBias, QNorm, KNorm,
    FfnNorm, Gate, Up, Down, GateBias, UpBias, DownBias,
    // Multi-head Latent Attention, MHA2MLA export layout (method document, section 5)
    KRope, KRopeBias, DownKv, DownK, DownV, UpK, UpKBias, UpV, UpVBias,
    // Multi-head Latent Attention, DeepSeek-V2/V3 layout (model/deepseek_config.h)
    QA, QABias, QANorm, QB, KvA, KvABias, KvANorm, KvB,
};

enum class TensorNaming { HuggingFace, Gguf };

// The tensor name for a role in a naming scheme; `layer` fills the per-layer pattern. nullopt where the scheme has
// no name for the role (e.g. MLA tensors in GGUF).
std::optional<std::string> tensorName(TensorRole role, TensorNaming naming, std::int64_t layer = 0);
bool tensorRoleIsPerLayer(TensorRole role);
std::string_view tensorRoleLabel(TensorRole role);

} // namespace mla
