#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mla {

// A file compiled into the binaries (core/embed_files.cmake, from resources/): the PyTorch modeling file and the
// recovery recipe that every MLA export carries.
struct EmbeddedFile {
    const char* name; // path relative to resources/ and to the export folder, e.g. "recovery/distill.py"
    const unsigned char* data;
    std::size_t size;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const std::size_t kEmbeddedFileCount;

// The content of one embedded file; throws an Error for an unknown name.
std::string embeddedFile(std::string_view name);

// Every file the PyTorch side of an MLA export needs, as (relative path, content): modeling_mla.py and recovery/.
std::vector<std::pair<std::string, std::string>> pytorchExportFiles();

// Makes config.json of an MLA export name its own model type and architecture, implemented by modeling_mla.py through
// auto_map, so that Hugging Face transformers loads it with trust_remote_code and refuses it without (a stock Llama
// class would load it with k_proj / v_proj missing and randomly initialised). The architecture it was converted from
// stays in mha2mla.base_model_type.
void nameMlaArchitecture(nlohmann::ordered_json& config);

} // namespace mla
