#pragma once

#include "tensor/tensor.h"
#include "util/mapped_file.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mla {

// One tensor record of a safetensors header, validated against the file.
struct SafetensorsEntry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0; // offsets relative to the start of the data section
    std::uint64_t end = 0;
};

struct SafetensorsHeader {
    std::uint64_t dataStart = 0; // absolute file offset of the data section
    std::vector<SafetensorsEntry> entries;
    std::map<std::string, std::string> metadata;
};

// Parses and validates the header of a safetensors file held in `bytes` (the whole file, or at least its header
// when `fileSize` says how large the file is). Checks: header length within the file and a sane bound, valid JSON
// object, known dtype, shape of non-negative dims, offsets inside the data section, end >= begin, byte size equal to
// shape x dtype, no two tensors overlapping. Every failure is an Error naming `file`.
SafetensorsHeader parseSafetensorsHeader(const std::uint8_t* bytes, std::size_t available, std::uint64_t fileSize,
                                         const std::filesystem::path& file);

// A memory-mapped safetensors file; tensors are views into the map.
class SafetensorsFile {
public:
    static SafetensorsFile open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return m_file->path(); }
    const SafetensorsHeader& header() const { return m_header; }
    bool contains(const std::string& name) const { return m_index.count(name) != 0; }
    Tensor tensor(const std::string& name) const; // Error if absent
    std::vector<std::string> names() const;

private:
    std::shared_ptr<const MappedFile> m_file;
    SafetensorsHeader m_header;
    std::map<std::string, std::size_t> m_index;
};

// Tensors of a checkpoint spread over one or many safetensors files (model.safetensors.index.json).
class SafetensorsCollection {
public:
    // `path` is a folder (model.safetensors or model.safetensors.index.json inside), a .safetensors file or an
    // index .json file.
    static SafetensorsCollection open(const std::filesystem::path& path);

    bool contains(const std::string& name) const { return m_where.count(name) != 0; }
    Tensor tensor(const std::string& name) const;
    std::vector<std::string> names() const;
    const std::vector<SafetensorsFile>& files() const { return m_files; }
    std::uint64_t totalBytes() const;

private:
    std::vector<SafetensorsFile> m_files;
    std::map<std::string, std::size_t> m_where;
};

} // namespace mla
