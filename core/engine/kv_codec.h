#pragma once

#include "engine/kv_cache_format.h"

#include <cstddef>
#include <cstdint>

// The byte encoding of one cached row (docs/kv-cache.md). A row of W elements is its elements, then one parameter
// block per group; groups are consecutive runs of g = min(groupSize, W) elements (the last may be shorter).
//   f32   W little-endian floats                          bf16  W bfloat16 (round to nearest even)
//   int8  W codes q in [0, 255], one per byte             int4  W codes q in [0, 15], element i in byte i/2, the low
//                                                               nibble when i is even (an odd row's last high nibble 0)
//   group parameters (int8, int4): F16 scale s, then F16 minimum m, little-endian; x ~ m + s*q
// Encoding per group: values are clamped to the F16 range (+-65504; NaN becomes 0), m = the largest F16 <= the
// group's minimum, s = the smallest F16 >= (max - m) / levels, q = clamp(rint((x - m) / s), 0, levels) with round
// half to even (s = 0, a constant group, stores code 0). So every element decodes within s/2 (plus float rounding),
// and s is at most (range + one F16 ulp of the minimum) / levels * (1 + 2^-10), or the smallest F16 subnormal: the
// bound tst_kv_codec checks. The CUDA backend encodes with the same operations in the same order, so both caches
// hold the same bytes.
namespace mla {

// The F16 value (bits) nearest to v from below / from above; v is first clamped to +-65504 (NaN to 0).
std::uint16_t f16AtMost(float v);
std::uint16_t f16AtLeast(float v);

// Encodes one row of `width` floats into `out` (format.rowBytes(width) bytes).
void encodeCacheRow(const float* x, std::int64_t width, const CachePartFormat& format, std::uint8_t* out);

// Decodes `count` rows (each format.rowBytes(width) bytes, `src` rows apart by that) into floats, row r at
// dst + r * dstStride.
void decodeCacheRows(const std::uint8_t* src, std::int64_t count, std::int64_t width, const CachePartFormat& format, float* dst,
                     std::int64_t dstStride);

namespace detail {
// Decoders of one group's elements, out[i] = offset + scale * code(first + i) for i < n. The generic ones are
// plain C++; the AVX2 ones (kv_codec_avx2.cpp) are used when the tensor kernels run AVX2.
struct KvCodecKernels {
    void (*int4)(const std::uint8_t* data, std::int64_t first, std::int64_t n, float scale, float offset, float* out);
    void (*int8)(const std::uint8_t* data, std::int64_t n, float scale, float offset, float* out);
    void (*bf16)(const std::uint8_t* data, std::int64_t n, float* out);
};
const KvCodecKernels& genericKvCodec();
const KvCodecKernels* avx2KvCodec(); // nullptr when not compiled in
const KvCodecKernels& activeKvCodec();
} // namespace detail

} // namespace mla
