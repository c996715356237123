#include "formats/safetensors_writer.h"

#include "util/error.h"
#include "util/staged_output.h"

#include <nlohmann/json.hpp>

namespace mla {

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& destination, std::vector<TensorDeclaration> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : m_staged(std::make_unique<StagedFile>(destination)), m_tensors(std::move(tensors))
{
    // nlohmann's ordered_json keeps declaration order in the header, which is also the data order.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata)
            meta[k] = v;
        header["__metadata__"] = meta;
    }
    std::uint64_t offset = 0;
    for (const auto& t : m_tensors) {
        std::uint64_t numel = 1;
        for (auto d : t.shape)
            numel *= static_cast<std::uint64_t>(d);
        const std::uint64_t size = numel * dtypeSize(t.dtype);
        header[t.name] = {{"dtype", std::string(dtypeName(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + size}}};
        offset += size;
    }
    std::string text = header.dump();
    // Pad with spaces so the data section starts 8-byte aligned, as the Hugging Face writer does.
    while ((text.size() + 8) % 8 != 0)
        text.push_back(' ');
    m_out.open(m_staged->path(), std::ios::binary | std::ios::trunc);
    if (!m_out)
        throw Error(m_staged->path(), "cannot create");
    const std::uint64_t length = text.size();
    m_out.write(reinterpret_cast<const char*>(&length), 8);
    m_out.write(text.data(), static_cast<std::streamsize>(text.size()));
    m_bytesWritten = 8 + text.size();
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::beginNext(const std::string& name, std::size_t count)
{
    if (m_next >= m_tensors.size() || m_tensors[m_next].name != name)
        throw Error(m_staged->destination(), "internal: tensor '" + name + "' written out of declaration order");
    std::uint64_t numel = 1;
    for (auto d : m_tensors[m_next].shape)
        numel *= static_cast<std::uint64_t>(d);
    if (numel != count)
        throw Error(m_staged->destination(), "internal: tensor '" + name + "' declared with " + std::to_string(numel)
                                                 + " elements, given " + std::to_string(count));
}

void SafetensorsWriter::writeNext(const std::string& name, const float* values, std::size_t count)
{
    beginNext(name, count);
    const DType dtype = m_tensors[m_next].dtype;
    const std::size_t bytes = count * dtypeSize(dtype);
    if (dtype == DType::F32) {
        m_out.write(reinterpret_cast<const char*>(values), static_cast<std::streamsize>(bytes));
    } else {
        m_scratch.resize(bytes);
        convertFromFloat(dtype, values, m_scratch.data(), count);
        m_out.write(reinterpret_cast<const char*>(m_scratch.data()), static_cast<std::streamsize>(bytes));
    }
    if (!m_out)
        throw Error(m_staged->path(), "write failed (disk full?)");
    m_bytesWritten += bytes;
    ++m_next;
}

void SafetensorsWriter::writeNext(const std::string& name, const Tensor& tensor)
{
    if (m_next < m_tensors.size() && tensor.dtype() == m_tensors[m_next].dtype) {
        beginNext(name, static_cast<std::size_t>(tensor.numel()));
        m_out.write(static_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.bytes()));
        if (!m_out)
            throw Error(m_staged->path(), "write failed (disk full?)");
        m_bytesWritten += tensor.bytes();
        ++m_next;
        return;
    }
    const std::vector<float> values = tensor.toFloats();
    writeNext(name, values.data(), values.size());
}

void SafetensorsWriter::finish()
{
    if (m_next != m_tensors.size())
        throw Error(m_staged->destination(), "internal: " + std::to_string(m_tensors.size() - m_next)
                                                 + " declared tensors were not written");
    m_out.flush();
    if (!m_out)
        throw Error(m_staged->path(), "write failed (disk full?)");
    m_out.close();
    m_staged->commit();
}

void writeSafetensors(const std::filesystem::path& destination, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata)
{
    std::vector<TensorDeclaration> decls;
    for (const auto& [name, t] : tensors)
        decls.push_back({name, t.dtype(), t.shape()});
    SafetensorsWriter writer(destination, std::move(decls), metadata);
    for (const auto& [name, t] : tensors)
        writer.writeNext(name, t);
    writer.finish();
}

} // namespace mla
