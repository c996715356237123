#pragma once

#include "model/tensor_plan.h"
#include "tensor/dtype.h"
#include "util/job_control.h"
#include "util/output_safety.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mla {

class StagedDirectory;

// Writes a Hugging Face checkpoint folder: config.json, model.safetensors or shards with
// model.safetensors.index.json (as Hugging Face names and lays them out), and any extra files. Tensors are produced
// one at a time by a callback and written immediately, so memory holds one tensor, not the model. Everything is
// written into a staging folder that replaces `folder` only in commit().
class CheckpointWriter {
public:
    // Produces the tensor for a planned slot, in any dtype (converted to the output dtype on write).
    using TensorSource = std::function<Tensor(const PlannedTensor& planned, const std::string& name)>;

    // `output`: where the folder may go (util/output_safety.h); checked here, before anything is written.
    CheckpointWriter(const std::filesystem::path& folder, const ModelConfig& config, nlohmann::ordered_json configJson,
                     DType dtype, std::uint64_t shardBytes = 0, const OutputOptions& output = {});
    ~CheckpointWriter();

    const std::vector<PlannedTensor>& plan() const { return m_plan; }
    const std::filesystem::path& stagingPath() const;

    void writeTensors(const TensorSource& source, const JobControl& job = {});
    void addFile(const std::string& name, const std::string& content); // name may hold a subfolder
    void copyFile(const std::filesystem::path& source, const std::string& name);
    void commit();

    std::uint64_t bytesWritten() const { return m_bytesWritten; }
    std::size_t shardCount() const { return m_shards.size(); }

private:
    struct Shard {
        std::string file;
        std::size_t first = 0; // plan indices [first, last)
        std::size_t last = 0;
    };

    std::unique_ptr<StagedDirectory> m_staged;
    ModelConfig m_config;
    nlohmann::ordered_json m_configJson;
    DType m_dtype;
    std::vector<PlannedTensor> m_plan;
    std::vector<std::string> m_names;
    std::vector<Shard> m_shards;
    std::uint64_t m_bytesWritten = 0;
    bool m_tensorsWritten = false;
};

} // namespace mla
