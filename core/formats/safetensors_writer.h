#pragma once

#include "tensor/tensor.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mla {

class StagedFile;

struct TensorDeclaration {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
};

// Streams a safetensors file: all tensors are declared up front (so the header is known), then their data is
// written one at a time in declaration order, so no more than one tensor is ever held in memory. The file appears
// under its name only after finish().
class SafetensorsWriter {
public:
    SafetensorsWriter(const std::filesystem::path& destination, std::vector<TensorDeclaration> tensors,
                      const std::map<std::string, std::string>& metadata = {});
    ~SafetensorsWriter();

    // Data of the next declared tensor, given as float32 and converted to its declared dtype.
    void writeNext(const std::string& name, const float* values, std::size_t count);
    void writeNext(const std::string& name, const Tensor& tensor); // converts dtype if needed
    void finish();

    std::uint64_t bytesWritten() const { return m_bytesWritten; }

private:
    void beginNext(const std::string& name, std::size_t count);

    std::unique_ptr<StagedFile> m_staged;
    std::ofstream m_out;
    std::vector<TensorDeclaration> m_tensors;
    std::size_t m_next = 0;
    std::uint64_t m_bytesWritten = 0;
    std::vector<std::uint8_t> m_scratch;
};

// Writes a whole set of small float32 tensors at once (tests, small models).
void writeSafetensors(const std::filesystem::path& destination, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

} // namespace mla
