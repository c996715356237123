#pragma once

#include "formats/gguf.h"
#include "formats/gguf_quantize.h"
#include "util/output_safety.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mla {

class StagedFile;

// Metadata values for the writer, in the reader's own value type so that what is written is what is read.
GgufValue ggufString(std::string value);
GgufValue ggufU32(std::uint32_t value);
GgufValue ggufI32(std::int32_t value);
GgufValue ggufU64(std::uint64_t value);
GgufValue ggufF32(float value);
GgufValue ggufBool(bool value);
GgufValue ggufStringArray(std::vector<std::string> values);
GgufValue ggufF32Array(const std::vector<float>& values);
GgufValue ggufI32Array(const std::vector<std::int32_t>& values);

struct GgufTensorDeclaration {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<std::uint64_t> dims; // ggml order: dims[0] is the contiguous one (a matrix [out, in] is {in, out})
};

// Bytes of a declared tensor's data.
std::uint64_t ggufTensorBytes(const GgufTensorDeclaration& tensor);

// What an existing file must be to be replaced without force (util/output_safety.h): a GGUF file.
FileKind ggufFileKind();

// Streams a GGUF v3 file as llama.cpp's gguf writer lays it out: header, metadata in the order given, tensor records,
// then each tensor's data at an offset aligned to `alignment` (general.alignment, written when not ggml's default
// 32). Metadata and tensors are declared first, then the data is written tensor by tensor in declaration order, so
// memory holds one tensor at a time. The file appears under its name only after finish(); the destination is checked
// against the output policy (`output`, util/output_safety.h) at construction and again before the rename.
class GgufWriter {
public:
    explicit GgufWriter(const std::filesystem::path& destination, std::uint32_t alignment = 32, OutputOptions output = {});
    ~GgufWriter();
    GgufWriter(const GgufWriter&) = delete;
    GgufWriter& operator=(const GgufWriter&) = delete;

    void setMetadata(const std::string& key, GgufValue value);
    void declareTensor(GgufTensorDeclaration tensor);
    const std::vector<GgufTensorDeclaration>& tensors() const { return m_tensors; }

    // The next declared tensor's data as float32, rows of dims[0] values, encoded in its declared type.
    void writeTensor(const std::string& name, const float* values, std::size_t count);
    // The same, row by row: `row(i, out)` fills row i (dims[0] values), so only one row is held at a time.
    using RowSource = std::function<void(std::uint64_t row, float* out)>;
    void writeTensorRows(const std::string& name, const RowSource& row);
    // The next declared tensor's data already encoded (exactly ggufTensorBytes of it).
    void writeTensorBytes(const std::string& name, const void* bytes, std::size_t size);
    void finish();

    const std::filesystem::path& destination() const;
    std::uint64_t bytesWritten() const { return m_bytesWritten; }

private:
    void writeHeader();
    const GgufTensorDeclaration& beginTensor(const std::string& name);
    void endTensor(std::uint64_t bytes);
    void put(const void* data, std::size_t size);

    std::unique_ptr<StagedFile> m_staged;
    std::ofstream m_out;
    std::uint32_t m_alignment;
    std::vector<std::pair<std::string, GgufValue>> m_metadata;
    std::vector<GgufTensorDeclaration> m_tensors;
    bool m_headerWritten = false;
    std::size_t m_next = 0;
    std::uint64_t m_bytesWritten = 0;
    std::vector<std::uint8_t> m_scratch;
    std::vector<float> m_rowScratch;
};

} // namespace mla
