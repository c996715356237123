#include "formats/safetensors.h"

#include "util/byte_reader.h"
#include "util/error.h"
#include "util/json_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace mla {
namespace {

// Real headers are a few hundred kilobytes at most; anything far beyond is a corrupt length field.
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

SafetensorsEntry parseEntry(const std::string& name, const nlohmann::json& value, std::uint64_t dataSize,
                            const std::filesystem::path& file)
{
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object())
        throw Error(file, where + ": entry is not an object");
    SafetensorsEntry e;
    e.name = name;
    auto dtypeIt = value.find("dtype");
    if (dtypeIt == value.end() || !dtypeIt->is_string())
        throw Error(file, where + ": missing dtype");
    const std::string dtypeName = dtypeIt->get<std::string>();
    const auto dtype = dtypeFromName(dtypeName);
    if (!dtype)
        throw Error(file, "unsupported dtype " + dtypeName + " in " + where + " (supported: F32, F16, BF16)");
    e.dtype = *dtype;

    auto shapeIt = value.find("shape");
    if (shapeIt == value.end() || !shapeIt->is_array())
        throw Error(file, where + ": missing shape");
    if (shapeIt->size() > 8)
        throw Error(file, where + ": shape has " + std::to_string(shapeIt->size()) + " dimensions");
    std::uint64_t numel = 1;
    for (const auto& d : *shapeIt) {
        if (!d.is_number_unsigned())
            throw Error(file, where + ": shape entries must be non-negative integers");
        const std::uint64_t dim = d.get<std::uint64_t>();
        numel = checkedMul(numel, dim, file, "tensor shape");
        e.shape.push_back(static_cast<std::int64_t>(dim));
    }
    if (numel > (1ull << 40))
        throw Error(file, where + ": shape " + shapeString(e.shape) + " is implausibly large");

    auto offIt = value.find("data_offsets");
    if (offIt == value.end() || !offIt->is_array() || offIt->size() != 2 || !(*offIt)[0].is_number_unsigned()
        || !(*offIt)[1].is_number_unsigned())
        throw Error(file, where + ": data_offsets must be two non-negative integers");
    e.begin = (*offIt)[0].get<std::uint64_t>();
    e.end = (*offIt)[1].get<std::uint64_t>();
    if (e.end < e.begin)
        throw Error(file, where + ": data_offsets end before they begin");
    if (e.end > dataSize)
        throw Error(file, where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end)
                              + ") reach beyond the data section of " + std::to_string(dataSize) + " bytes");
    const std::uint64_t expected = checkedMul(numel, dtypeSize(e.dtype), file, "tensor size");
    if (e.end - e.begin != expected)
        throw Error(file, where + ": holds " + std::to_string(e.end - e.begin) + " bytes but shape "
                              + shapeString(e.shape) + " of " + dtypeName + " needs " + std::to_string(expected));
    return e;
}

} // namespace

SafetensorsHeader parseSafetensorsHeader(const std::uint8_t* bytes, std::size_t available, std::uint64_t fileSize,
                                         const std::filesystem::path& file)
{
    ByteReader reader(bytes, available, file);
    if (fileSize < 8)
        throw Error(file, "not a safetensors file: " + std::to_string(fileSize) + " bytes, too short for a header");
    const auto headerLength = reader.read<std::uint64_t>("header length");
    if (headerLength > fileSize - 8)
        throw Error(file, "header length " + std::to_string(headerLength) + " is beyond the end of the file ("
                              + std::to_string(fileSize) + " bytes)");
    if (headerLength > kMaxHeaderBytes)
        throw Error(file, "header length " + std::to_string(headerLength) + " is implausibly large");
    const std::string text = reader.readString(static_cast<std::size_t>(headerLength), "header");

    checkJsonNesting(text, file, "the header");
    nlohmann::json json;
    try {
        json = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(file, std::string("header is not valid JSON: ") + e.what());
    }
    if (!json.is_object())
        throw Error(file, "header is not a JSON object");

    SafetensorsHeader header;
    header.dataStart = 8 + headerLength;
    const std::uint64_t dataSize = fileSize - header.dataStart;
    for (auto it = json.begin(); it != json.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object())
                throw Error(file, "__metadata__ is not an object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string())
                    throw Error(file, "__metadata__ value '" + m.key() + "' is not a string");
                header.metadata[m.key()] = m->get<std::string>();
            }
            continue;
        }
        header.entries.push_back(parseEntry(it.key(), *it, dataSize, file));
    }

    std::vector<const SafetensorsEntry*> byOffset;
    for (const auto& e : header.entries) {
        if (e.end > e.begin)
            byOffset.push_back(&e);
    }
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < byOffset.size(); ++i) {
        if (byOffset[i]->begin < byOffset[i - 1]->end)
            throw Error(file, "tensors '" + byOffset[i - 1]->name + "' and '" + byOffset[i]->name
                                  + "' overlap in the data section");
    }
    return header;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path)
{
    SafetensorsFile f;
    f.m_file = MappedFile::open(path);
    f.m_header = parseSafetensorsHeader(f.m_file->data(), f.m_file->size(), f.m_file->size(), path);
    for (std::size_t i = 0; i < f.m_header.entries.size(); ++i)
        f.m_index[f.m_header.entries[i].name] = i;
    return f;
}

Tensor SafetensorsFile::tensor(const std::string& name) const
{
    auto it = m_index.find(name);
    if (it == m_index.end())
        throw Error(path(), "no tensor '" + name + "'");
    const SafetensorsEntry& e = m_header.entries[it->second];
    const std::uint8_t* data = m_file->data() + m_header.dataStart + e.begin;
    // An empty tensor still needs a non-null pointer to count as present.
    static const std::uint8_t kEmpty[8] = {};
    if (e.end == e.begin)
        data = kEmpty;
    return Tensor(e.dtype, e.shape, data, m_file);
}

std::vector<std::string> SafetensorsFile::names() const
{
    std::vector<std::string> out;
    for (const auto& e : m_header.entries)
        out.push_back(e.name);
    return out;
}

SafetensorsCollection SafetensorsCollection::open(const std::filesystem::path& path)
{
    namespace fs = std::filesystem;
    fs::path single;
    fs::path index;
    if (fs::is_directory(path)) {
        if (fs::exists(path / "model.safetensors.index.json"))
            index = path / "model.safetensors.index.json";
        else if (fs::exists(path / "model.safetensors"))
            single = path / "model.safetensors";
        else
            throw Error(path, "no model.safetensors or model.safetensors.index.json in this folder");
    } else if (path.extension() == ".json") {
        index = path;
    } else {
        single = path;
    }

    SafetensorsCollection c;
    if (!single.empty()) {
        c.m_files.push_back(SafetensorsFile::open(single));
        for (const auto& name : c.m_files[0].names())
            c.m_where[name] = 0;
        return c;
    }

    const nlohmann::json json = readJsonFile(index);
    if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object())
        throw Error(index, "missing 'weight_map' object");
    std::map<std::string, std::size_t> fileIndex;
    for (auto it = json["weight_map"].begin(); it != json["weight_map"].end(); ++it) {
        if (!it->is_string())
            throw Error(index, "weight_map entry '" + it.key() + "' is not a file name");
        const std::string shard = it->get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
            throw Error(index, "weight_map entry '" + it.key() + "' names '" + shard + "', not a file in this folder");
        auto [pos, inserted] = fileIndex.try_emplace(shard, c.m_files.size());
        if (inserted)
            c.m_files.push_back(SafetensorsFile::open(index.parent_path() / shard));
        const SafetensorsFile& file = c.m_files[pos->second];
        if (!file.contains(it.key()))
            throw Error(index, "weight_map puts tensor '" + it.key() + "' in " + shard + ", which does not hold it");
        c.m_where[it.key()] = pos->second;
    }
    return c;
}

Tensor SafetensorsCollection::tensor(const std::string& name) const
{
    auto it = m_where.find(name);
    if (it == m_where.end())
        throw Error("no tensor '" + name + "' in the checkpoint");
    return m_files[it->second].tensor(name);
}

std::vector<std::string> SafetensorsCollection::names() const
{
    std::vector<std::string> out;
    for (const auto& [name, where] : m_where)
        out.push_back(name);
    return out;
}

std::uint64_t SafetensorsCollection::totalBytes() const
{
    std::uint64_t total = 0;
    for (const auto& f : m_files) {
        for (const auto& e : f.header().entries)
            total += e.end - e.begin;
    }
    return total;
}

} // namespace mla
