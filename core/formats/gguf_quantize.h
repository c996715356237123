#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mla {

// The ggml tensor types the GGUF writer produces. Values are ggml's type ids (ggml.h `enum ggml_type`).
enum class GgmlType : std::uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, BF16 = 30 };

struct GgmlTypeTraits {
    GgmlType type;
    std::string_view name;      // as ggml names it (ggml_type_name)
    std::string_view userName;  // as the command line spells it
    std::uint32_t blockSize;    // weights per block (1 for plain floats)
    std::uint32_t blockBytes;   // bytes per block
    std::uint32_t fileType;     // llama.cpp's `general.file_type` (enum llama_ftype) for a file mostly of this type
};

const GgmlTypeTraits& ggmlTypeTraits(GgmlType type);
std::optional<GgmlType> ggmlTypeFromUserName(std::string_view name); // f32, f16, bf16, q8_0, q4_0
std::string_view ggmlTypeUserNames();                                // "f32, f16, bf16, q8_0 or q4_0"

// Whether a row of `n` weights can be stored in `type` (quantised rows are whole blocks).
bool ggmlRowFits(GgmlType type, std::int64_t n);
// Bytes of `n` weights in `type`; `n` must fit (ggmlRowFits).
std::uint64_t ggmlRowBytes(GgmlType type, std::int64_t n);

// ggml's reference quantisers (ggml-quants.c quantize_row_q8_0_ref / quantize_row_q4_0_ref), which llama.cpp's
// llama-quantize uses for these types without an importance matrix, so a file written here holds the bytes that
// llama.cpp would write. Blocks of 32 weights:
//   Q8_0: f16 d = max|x| / 127, then 32 int8 q = round(x / d)                       w = d * q
//   Q4_0: f16 d = m / -8 with m the weight of largest magnitude (sign kept), then 16 bytes; weight j in the low
//         nibble of byte j, weight j + 16 in its high nibble, q = min(15, trunc(x / d + 8.5))   w = d * (q - 8)
// `n` is a multiple of 32.
void quantizeRowQ8_0(const float* x, std::uint8_t* out, std::int64_t n);
void quantizeRowQ4_0(const float* x, std::uint8_t* out, std::int64_t n);
void dequantizeRowQ8_0(const std::uint8_t* in, float* y, std::int64_t n);
void dequantizeRowQ4_0(const std::uint8_t* in, float* y, std::int64_t n);

// One row of float32 weights in `type` (F32, F16 and BF16 round to nearest even, as ggml and PyTorch do).
void encodeGgmlRow(GgmlType type, const float* x, std::uint8_t* out, std::int64_t n);
void decodeGgmlRow(GgmlType type, const std::uint8_t* in, float* y, std::int64_t n);

} // namespace mla
