#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace mla {

// The block-quantised tensor types of GGUF files (ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the k-quants Q2_K to
// Q6_K), dequantised to float32 exactly as the format defines each value: the same integer codes, the same half-
// precision scales and the same float operations in the same order (no fused multiply-add), so every weight equals
// the one llama.cpp computes from the file.
struct GgmlBlockType {
    std::uint32_t id;         // ggml_type
    const char* name;         // "Q4_K"
    std::size_t blockValues;  // values per block (32, or 256 for the k-quants)
    std::size_t blockBytes;   // bytes per block
    void (*dequantize)(const std::uint8_t* block, float* out); // one block
};

// The quantised type with this ggml id, or nullptr (for F32/F16/BF16 and types we do not read).
const GgmlBlockType* ggmlBlockType(std::uint32_t id);

// Dequantises `values` (a multiple of the block size) from `blocks`.
void dequantizeGgml(const GgmlBlockType& type, const std::uint8_t* blocks, float* out, std::size_t values);

// llama.cpp's name for a GGUF general.file_type ("Q4_K_M", "Q8_0", "F16"), or nullopt when unknown.
std::optional<std::string> ggufFileTypeName(std::int64_t fileType);

} // namespace mla
