#include "conversion/pytorch_export.h"

#include "model/mla_model_type.h"
#include "util/error.h"

namespace mla {

std::string embeddedFile(std::string_view name)
{
    for (std::size_t i = 0; i < kEmbeddedFileCount; ++i) {
        if (name == kEmbeddedFiles[i].name)
            return std::string(reinterpret_cast<const char*>(kEmbeddedFiles[i].data), kEmbeddedFiles[i].size);
    }
    throw Error("internal: no embedded file '" + std::string(name) + "'");
}

std::vector<std::pair<std::string, std::string>> pytorchExportFiles()
{
    std::vector<std::pair<std::string, std::string>> files;
    for (std::size_t i = 0; i < kEmbeddedFileCount; ++i)
        files.emplace_back(kEmbeddedFiles[i].name, embeddedFile(kEmbeddedFiles[i].name));
    return files;
}

void nameMlaArchitecture(nlohmann::ordered_json& config)
{
    config["architectures"] = nlohmann::ordered_json::array({std::string(kMlaArchitecture)});
    config["model_type"] = std::string(kMlaModelType);
    config["auto_map"] = {{"AutoConfig", "modeling_mla.MlaConfig"}, {"AutoModelForCausalLM", "modeling_mla.MlaForCausalLM"}};
}

} // namespace mla
