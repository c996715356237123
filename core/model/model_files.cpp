#include "model/model_files.h"

namespace mla {

std::vector<std::filesystem::path> modelInputFiles(const Model& model)
{
    namespace fs = std::filesystem;
    if (model.source.empty()) // made in memory (a test fixture): read from no file
        return {};
    std::vector<fs::path> files{model.source};
    std::error_code ec;
    if (model.format == "safetensors") {
        // A Hugging Face checkpoint is a folder (config.json sits beside the weights): the folder is the input.
        fs::path folder = fs::is_directory(model.source, ec) ? model.source : model.source.parent_path();
        if (folder.empty())
            folder = ".";
        files.push_back(folder);
        for (const char* name : {"config.json", "model.safetensors.index.json", "model.safetensors"})
            files.push_back(folder / name);
    }
    return files;
}

} // namespace mla
