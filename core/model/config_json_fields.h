#pragma once

#include "model/model_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace mla {

class JsonObject;

// Fields every config.json of a supported family reads the same way, shared by the Llama-family reader
// (model_config.cpp) and the DeepSeek one (deepseek_config.cpp).

// The sizes every config.json must give (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// vocab_size), read into `c`; an Error names the file and the key.
void readRequiredSizes(const JsonObject& obj, ModelConfig& c);
// bos_token_id / eos_token_id (an integer, a list of at most 1024, or null), read wide and clamped so that an id
// beyond int cannot wrap into the vocabulary (validate() checks the range).
void readSpecialTokenIds(const nlohmann::json& json, const std::filesystem::path& file, ModelConfig& c);

} // namespace mla
