#include "model/tensor_names.h"

#include <cstdio>

namespace mla {
namespace {

struct TensorNameRow {
    TensorRole role;
    std::string_view label;
    bool perLayer;
    const char* huggingFace; // printf pattern, %lld = layer
    const char* gguf;        // nullptr: not representable
};

// One row per role, in enum order.
constexpr TensorNameRow kTensorNames[] = {
    {TensorRole::Embedding, "token embedding", false, "model.embed_tokens.weight", "token_embd.weight"},
    {TensorRole::OutputNorm, "final norm", false, "model.norm.weight", "output_norm.weight"},
    {TensorRole::Output, "output head", false, "lm_head.weight", "output.weight"},
    {TensorRole::AttnNorm, "attention norm", true, "model.layers.%lld.input_layernorm.weight", "blk.%lld.attn_norm.weight"},
    {TensorRole::Q, "query projection", true, "model.layers.%lld.self_attn.q_proj.weight", "blk.%lld.attn_q.weight"},
    {TensorRole::K, "key projection", true, "model.layers.%lld.self_attn.k_proj.weight", "blk.%lld.attn_k.weight"},
    {TensorRole::V, "value projection", true, "model.layers.%lld.self_attn.v_proj.weight", "blk.%lld.attn_v.weight"},
    {TensorRole::O, "output projection", true, "model.layers.%lld.self_attn.o_proj.weight", "blk.%lld.attn_output.weight"},
    {TensorRole::QBias, "query bias", true, "model.layers.%lld.self_attn.q_proj.bias", "blk.%lld.attn_q.bias"},
    {TensorRole::KBias, "key bias", true, "model.layers.%lld.self_attn.k_proj.bias", "blk.%lld.attn_k.bias"},
    {TensorRole::VBias, "value bias", true, "model.layers.%lld.self_attn.v_proj.bias", "blk.%lld.attn_v.bias"},
    {TensorRole::OBias, "output bias", true, "model.layers.%lld.self_attn.o_proj.bias", "blk.%lld.attn_output.bias"},
    {TensorRole::QNorm, "query norm", true, "model.layers.%lld.self_attn.q_norm.weight", "blk.%lld.attn_q_norm.weight"},
    {TensorRole::KNorm, "key norm", true, "model.layers.%lld.self_attn.k_norm.weight", "blk.%lld.attn_k_norm.weight"},
    {TensorRole::FfnNorm, "feed-forward norm", true, "model.layers.%lld.post_attention_layernorm.weight", "blk.%lld.ffn_norm.weight"},
    {TensorRole::Gate, "gate projection", true, "model.layers.%lld.mlp.gate_proj.weight", "blk.%lld.ffn_gate.weight"},
    {TensorRole::Up, "up projection", true, "model.layers.%lld.mlp.up_proj.weight", "blk.%lld.ffn_up.weight"},
    {TensorRole::Down, "down projection", true, "model.layers.%lld.mlp.down_proj.weight", "blk.%lld.ffn_down.weight"},
    {TensorRole::GateBias, "gate bias", true, "model.layers.%lld.mlp.gate_proj.bias", "blk.%lld.ffn_gate.bias"},
    {TensorRole::UpBias, "up bias", true, "model.layers.%lld.mlp.up_proj.bias", "blk.%lld.ffn_up.bias"},
    {TensorRole::DownBias, "down bias", true, "model.layers.%lld.mlp.down_proj.bias", "blk.%lld.ffn_down.bias"},
    {TensorRole::KRope, "RoPE key projection", true, "model.layers.%lld.self_attn.k_r_proj.weight", nullptr},
    {TensorRole::KRopeBias, "RoPE key bias", true, "model.layers.%lld.self_attn.k_r_proj.bias", nullptr},
    {TensorRole::DownKv, "joint KV down projection", true, "model.layers.%lld.self_attn.kv_proj.down_kv.weight", nullptr},
    {TensorRole::DownK, "key down projection", true, "model.layers.%lld.self_attn.kv_proj.down_k.weight", nullptr},
    {TensorRole::DownV, "value down projection", true, "model.layers.%lld.self_attn.kv_proj.down_v.weight", nullptr},
    {TensorRole::UpK, "key up projection", true, "model.layers.%lld.self_attn.kv_proj.up_k.weight", nullptr},
    {TensorRole::UpKBias, "key up bias", true, "model.layers.%lld.self_attn.kv_proj.up_k.bias", nullptr},
    {TensorRole::UpV, "value up projection", true, "model.layers.%lld.self_attn.kv_proj.up_v.weight", nullptr},
    {TensorRole::UpVBias, "value up bias", true, "model.layers.%lld.self_attn.kv_proj.up_v.bias", nullptr},
    {TensorRole::QA, "query down projection", true, "model.layers.%lld.self_attn.q_a_proj.weight", "blk.%lld.attn_q_a.weight"},
    {TensorRole::QABias, "query down bias", true, "model.layers.%lld.self_attn.q_a_proj.bias", nullptr},
    {TensorRole::QANorm, "query latent norm", true, "model.layers.%lld.self_attn.q_a_layernorm.weight", "blk.%lld.attn_q_a_norm.weight"},
    {TensorRole::QB, "query up projection", true, "model.layers.%lld.self_attn.q_b_proj.weight", "blk.%lld.attn_q_b.weight"},
    {TensorRole::KvA, "latent and shared RoPE key projection", true, "model.layers.%lld.self_attn.kv_a_proj_with_mqa.weight",
     "blk.%lld.attn_kv_a_mqa.weight"},
    {TensorRole::KvABias, "latent and shared RoPE key bias", true, "model.layers.%lld.self_attn.kv_a_proj_with_mqa.bias", nullptr},
    {TensorRole::KvANorm, "latent norm (kv_a_layernorm)", true, "model.layers.%lld.self_attn.kv_a_layernorm.weight",
     "blk.%lld.attn_kv_a_norm.weight"},
    // llama.cpp's older deepseek2 files hold kv_b_proj as attn_kv_b; its current ones split it per head into attn_k_b
    // and attn_v_b, which the GGUF reader merges and the GGUF writer splits (formats/gguf_deepseek2.h).
    {TensorRole::KvB, "latent up projection (keys and values)", true, "model.layers.%lld.self_attn.kv_b_proj.weight",
     "blk.%lld.attn_kv_b.weight"},
};

static_assert(sizeof(kTensorNames) / sizeof(kTensorNames[0]) == static_cast<int>(TensorRole::KvB) + 1,
              "one name row per tensor role");

const TensorNameRow& row(TensorRole role)
{
    return kTensorNames[static_cast<int>(role)];
}

} // namespace

std::optional<std::string> tensorName(TensorRole role, TensorNaming naming, std::int64_t layer)
{
    const TensorNameRow& r = row(role);
    const char* pattern = naming == TensorNaming::HuggingFace ? r.huggingFace : r.gguf;
    if (!pattern)
        return std::nullopt;
    if (!r.perLayer)
        return std::string(pattern);
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, pattern, static_cast<long long>(layer));
    return std::string(buffer);
}

bool tensorRoleIsPerLayer(TensorRole role)
{
    return row(role).perLayer;
}

std::string_view tensorRoleLabel(TensorRole role)
{
    return row(role).label;
}

} // namespace mla
