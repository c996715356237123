#pragma once

#include "tensor/tensor.h"
#include "util/mapped_file.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mla {

enum class GgufValueType : std::uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

// A metadata value. Scalars land in `number` (and `integer` for integer types); arrays of strings in `strings`,
// arrays of numbers in `numbers`. Nested arrays are parsed (so the file stays readable) but not kept.
struct GgufValue {
    GgufValueType type = GgufValueType::U32;
    GgufValueType arrayType = GgufValueType::U32;
    double number = 0.0;
    std::int64_t integer = 0;
    bool boolean = false;
    std::string string;
    std::vector<std::string> strings;
    std::vector<double> numbers;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<std::uint64_t> dims; // ggml order: dims[0] is the contiguous (innermost) one
    std::uint32_t ggmlType = 0;
    std::uint64_t offset = 0;        // relative to the data section
    std::uint64_t bytes = 0;
    std::uint64_t values = 0;
};

// How a GGUF file stores its weights: llama.cpp's file type (general.file_type, e.g. "Q4_K_M"; empty when absent)
// and how many tensors of each ggml type it holds.
struct GgufQuantization {
    std::string fileType;
    std::map<std::string, std::int64_t> tensorTypes;
    bool quantized = false; // some tensor is block-quantised (and is dequantised to F32 on load)
};

// A memory-mapped GGUF (v2 or v3) file, validated as hostile input: every count, length, offset and alignment is
// checked against the file and against overflow before use.
class GgufFile {
public:
    static GgufFile open(const std::filesystem::path& path);
    // Parses from a byte range (fuzzing); `owner` keeps the bytes alive for tensor views, may be null.
    static GgufFile parse(const std::uint8_t* data, std::size_t size, const std::filesystem::path& path,
                          std::shared_ptr<const void> owner);

    std::uint32_t version() const { return m_version; }
    const std::map<std::string, GgufValue>& metadata() const { return m_metadata; }
    const GgufValue* find(const std::string& key) const;
    const std::vector<GgufTensorInfo>& tensors() const { return m_tensors; }
    // In our [rows, cols] order: a view into the file for F32/F16/BF16, a dequantised F32 copy for the block-
    // quantised types (formats/ggml_quants.h).
    std::optional<Tensor> tensor(const std::string& name) const;
    GgufQuantization quantization() const;
    std::uint64_t dequantizedBytes() const; // F32 bytes of all quantised tensors
    const std::filesystem::path& path() const { return m_path; }
    std::uint64_t fileSize() const { return m_size; }

private:
    std::filesystem::path m_path;
    std::shared_ptr<const void> m_owner;
    const std::uint8_t* m_data = nullptr;
    std::uint64_t m_size = 0;
    std::uint32_t m_version = 0;
    std::uint64_t m_dataStart = 0;
    std::map<std::string, GgufValue> m_metadata;
    std::vector<GgufTensorInfo> m_tensors;
    std::map<std::string, std::size_t> m_index;
};

std::string ggmlTypeName(std::uint32_t type);

} // namespace mla
