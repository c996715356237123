#include "formats/checkpoint_source.h"
#include "formats/safetensors.h"
#include "util/error.h"
#include "util/json_util.h"

#include <memory>

namespace mla {

CheckpointSource openHuggingFaceCheckpoint(const std::filesystem::path& path)
{
    namespace fs = std::filesystem;
    const fs::path folder = fs::is_directory(path) ? path : path.parent_path();
    const fs::path configPath = folder / "config.json";
    if (!fs::exists(configPath))
        throw Error(path, "no config.json next to the safetensors weights");

    CheckpointSource source;
    source.format = "safetensors";
    source.file = path;
    source.naming = TensorNaming::HuggingFace;
    source.interleavedRope = false;
    source.configJson = readJsonFile(configPath);
    source.config = configFromHuggingFace(*source.configJson, configPath);

    auto collection = std::make_shared<SafetensorsCollection>(SafetensorsCollection::open(path));
    for (const auto& f : collection->files())
        source.fileBytes += fs::file_size(f.path());
    for (const auto& f : collection->files()) {
        for (const auto& [key, value] : f.header().metadata) {
            if (!collection->contains(key) && collection->contains(value))
                source.aliases[key] = value;
        }
    }
    source.find = [collection](const std::string& name) -> std::optional<Tensor> {
        if (!collection->contains(name))
            return std::nullopt;
        return collection->tensor(name);
    };
    if (collection->files().size() == 1)
        source.file = collection->files()[0].path();
    return source;
}

} // namespace mla
