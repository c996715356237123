#pragma once

#include "model/model.h"

#include <filesystem>
#include <string>

namespace mla {

// The one entry point for every checkpoint format. `path` may be a Hugging Face folder, a .safetensors file, a
// model.safetensors.index.json, a llama2.c .bin or a .gguf; the format is recognised by content where it can be.
// Any problem is an mla::Error naming the file and the problem.
Model loadModel(const std::filesystem::path& path);

// "safetensors", "gguf" or "llama2c" (throws if the path cannot be a checkpoint).
std::string detectCheckpointFormat(const std::filesystem::path& path);

} // namespace mla
