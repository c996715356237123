#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mla {

// What differs between the supported Llama-family architectures, as data. Adding an architecture means adding a
// row here (and tensor names in tensor_names.cpp if it has new tensors), not a branch in the engine.
struct ArchitectureInfo {
    std::string_view name;          // our key, also the Hugging Face model_type
    std::string_view hfClass;       // architectures[0] in config.json
    std::string_view displayName;
    bool qkvBiasAlways;             // qwen2: q/k/v biases regardless of attention_bias
    bool attentionBiasKey;          // honours attention_bias (llama, mistral, qwen3)
    bool qkNorm;                    // qwen3
    bool usesSlidingWindowKey;      // mistral: sliding_window applies
    bool conversionSupported;
    std::string_view conversionUnsupportedReason;
    // DeepSeek-V2/V3 Multi-head Latent Attention (model/deepseek_config.h); the rows above leave these at false.
    bool latentAttention = false;
    bool ropeInterleaveKey = false;  // honours config rope_interleave (V3); false: always interleaved (V2)
    bool yarnMscaleInScale = false;  // transformers multiplies the softmax scale by yarn's mscale_all_dim term (V3)
    std::int64_t defaultFirstDenseLayers = 0; // transformers' defaults when the config omits the MoE fields
    std::int64_t defaultRoutedExperts = 0;
    std::int64_t defaultMaxPositions = 2048;
};

const ArchitectureInfo* findArchitecture(std::string_view name);
const ArchitectureInfo& architectureInfo(std::string_view name); // throws for an unknown key
std::string supportedArchitectureList();

} // namespace mla
