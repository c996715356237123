#include "model/architecture.h"

#include "util/error.h"

namespace mla {
namespace {

constexpr ArchitectureInfo kArchitectures[] = {
    {"llama", "LlamaForCausalLM", "Llama", false, true, false, false, true, ""},
    {"mistral", "MistralForCausalLM", "Mistral", false, true, false, true, true, ""},
    {"qwen2", "Qwen2ForCausalLM", "Qwen2", true, false, false, false, true, ""},
    {"qwen3", "Qwen3ForCausalLM", "Qwen3", false, true, true, false, false,
     "Qwen3 normalises each key head with q_norm/k_norm after the projection; an RMSNorm of the whole head does not "
     "commute with splitting the key into RoPE and latent parts, so the low-rank factorisation of W_k would not "
     "reproduce the normalised keys"},
    {"deepseek_v2", "DeepseekV2ForCausalLM", "DeepSeek-V2", false, false, false, false, false,
     "the model already uses Multi-head Latent Attention", true, false, false, 0, 64, 2048},
    {"deepseek_v3", "DeepseekV3ForCausalLM", "DeepSeek-V3", false, false, false, false, false,
     "the model already uses Multi-head Latent Attention", true, true, true, 3, 256, 4096},
};

} // namespace

const ArchitectureInfo* findArchitecture(std::string_view name)
{
    for (const auto& a : kArchitectures) {
        if (a.name == name)
            return &a;
    }
    return nullptr;
}

const ArchitectureInfo& architectureInfo(std::string_view name)
{
    if (const auto* a = findArchitecture(name))
        return *a;
    throw Error("unsupported architecture '" + std::string(name) + "' (supported: " + supportedArchitectureList() + ")");
}

std::string supportedArchitectureList()
{
    std::string s;
    for (const auto& a : kArchitectures) {
        if (!s.empty())
            s += ", ";
        s += a.name;
    }
    return s;
}

} // namespace mla
