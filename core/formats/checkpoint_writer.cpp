#include "formats/checkpoint_writer.h"

#include "formats/safetensors_writer.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/input_integrity.h"
#include "util/mapped_file.h"
#include "util/staged_output.h"

#include <cstdio>
#include <fstream>

namespace mla {

CheckpointWriter::CheckpointWriter(const std::filesystem::path& folder, const ModelConfig& config,
                                   nlohmann::ordered_json configJson, DType dtype, std::uint64_t shardBytes,
                                   const OutputOptions& output)
    : m_staged(std::make_unique<StagedDirectory>(folder, output)), m_config(config), m_configJson(std::move(configJson)),
      m_dtype(dtype), m_plan(tensorPlan(config))
{
    for (const auto& p : m_plan)
        m_names.push_back(*tensorName(p.role, TensorNaming::HuggingFace, p.layer));

    // Consecutive plan ranges per shard keep the write order sequential; a tensor larger than a shard gets its own.
    std::vector<Shard> shards;
    std::uint64_t current = 0;
    for (std::size_t i = 0; i < m_plan.size(); ++i) {
        std::uint64_t bytes = dtypeSize(dtype);
        for (auto d : m_plan[i].shape)
            bytes *= static_cast<std::uint64_t>(d);
        if (shards.empty() || (shardBytes > 0 && current > 0 && current + bytes > shardBytes)) {
            shards.push_back({"", i, i});
            current = 0;
        }
        shards.back().last = i + 1;
        current += bytes;
    }
    const std::size_t n = shards.size();
    for (std::size_t s = 0; s < n; ++s) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n);
        shards[s].file = n == 1 ? "model.safetensors" : name;
    }
    m_shards = std::move(shards);
}

CheckpointWriter::~CheckpointWriter() = default;

const std::filesystem::path& CheckpointWriter::stagingPath() const
{
    return m_staged->path();
}

void CheckpointWriter::writeTensors(const TensorSource& source, const JobControl& job)
{
    nlohmann::ordered_json weightMap = nlohmann::ordered_json::object();
    std::uint64_t totalSize = 0;
    std::size_t done = 0;
    for (const Shard& shard : m_shards) {
        std::vector<TensorDeclaration> decls;
        for (std::size_t i = shard.first; i < shard.last; ++i)
            decls.push_back({m_names[i], m_dtype, m_plan[i].shape});
        SafetensorsWriter writer(m_staged->path() / shard.file, decls, {{"format", "pt"}});
        for (std::size_t i = shard.first; i < shard.last; ++i) {
            job.progress(static_cast<double>(done) / static_cast<double>(m_plan.size()), "writing " + m_names[i]);
            const Tensor t = source(m_plan[i], m_names[i]);
            checkMappedInputs(); // a source file that shrank while being read gave zeros: do not write them
            if (t.shape() != m_plan[i].shape)
                throw Error(m_staged->destination(), "internal: tensor '" + m_names[i] + "' produced with shape "
                                                         + shapeString(t.shape()) + ", expected " + shapeString(m_plan[i].shape));
            writer.writeNext(m_names[i], t);
            MappedFile::releasePages(t.data(), t.bytes());
            totalSize += static_cast<std::uint64_t>(t.numel()) * dtypeSize(m_dtype);
            weightMap[m_names[i]] = shard.file;
            ++done;
        }
        writer.finish();
        m_bytesWritten += writer.bytesWritten();
    }
    if (m_shards.size() > 1) {
        nlohmann::ordered_json index;
        index["metadata"] = {{"total_size", totalSize}};
        index["weight_map"] = weightMap;
        addFile("model.safetensors.index.json", index.dump(2) + "\n");
    }
    m_configJson["torch_dtype"] = m_dtype == DType::F32 ? "float32" : m_dtype == DType::F16 ? "float16" : "bfloat16";
    m_tensorsWritten = true;
    job.progress(1.0, "tensors written");
}

void CheckpointWriter::addFile(const std::string& name, const std::string& content)
{
    if (const auto parent = std::filesystem::path(name).parent_path(); !parent.empty())
        std::filesystem::create_directories(m_staged->path() / parent);
    std::ofstream out(m_staged->path() / name, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out)
        throw Error(m_staged->path() / name, "write failed");
    m_bytesWritten += content.size();
}

void CheckpointWriter::copyFile(const std::filesystem::path& source, const std::string& name)
{
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." || name == kOutputMarkerName)
        throw Error(source, "cannot be copied into the output folder as '" + name + "'");
    std::error_code ec;
    std::filesystem::remove(m_staged->path() / name, ec);
    m_bytesWritten += copyInputFile(source, m_staged->path() / name);
}

void CheckpointWriter::commit()
{
    if (!m_tensorsWritten)
        throw Error(m_staged->destination(), "internal: commit before the tensors were written");
    addFile("config.json", m_configJson.dump(2) + "\n");
    m_staged->commit();
}

} // namespace mla
