#pragma once

#include "model/model_config.h"
#include "model/tensor_names.h"
#include "tensor/tensor.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace mla {

// What a format reader hands to the one model builder: the config, a way to find tensors by the format's own names,
// and how the format lays out RoPE pairs. Format differences end here.
struct CheckpointSource {
    ModelConfig config;
    TensorNaming naming = TensorNaming::HuggingFace;
    bool interleavedRope = false; // llama2.c and GGUF store pairs as (2j, 2j+1)
    std::function<std::optional<Tensor>(const std::string& name)> find;
    std::string format;
    std::filesystem::path file; // named in error messages
    std::uint64_t fileBytes = 0;
    std::optional<nlohmann::json> configJson;
    std::optional<EmbeddedVocabulary> vocabulary;
    // Names under which a tensor may be stored instead (safetensors __metadata__ as safetensors' save_model writes
    // it for shared weights: {"model.embed_tokens.weight": "lm_head.weight"} when only the latter was kept).
    std::map<std::string, std::string> aliases;
};

CheckpointSource openHuggingFaceCheckpoint(const std::filesystem::path& path);
CheckpointSource openLlama2cCheckpoint(const std::filesystem::path& path);
CheckpointSource openGgufCheckpoint(const std::filesystem::path& path);

} // namespace mla
