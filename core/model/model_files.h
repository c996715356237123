#pragma once

#include "model/model.h"

#include <filesystem>
#include <vector>

namespace mla {

// The files and folders a loaded model was read from, which no output may go over or into (util/output_safety.h):
// the checkpoint file(s) and, for a Hugging Face checkpoint, its folder with config.json and the index.
std::vector<std::filesystem::path> modelInputFiles(const Model& model);

} // namespace mla
