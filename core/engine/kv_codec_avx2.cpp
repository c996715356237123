// Compiled with -mavx2 -mfma -mf16c; only called after the CPU has been checked for those features. Decoding is on
// the read path of attention over a long context, which is bound by memory bandwidth: these loops must keep up with
// the bytes they save (docs/benchmarks.md, "Quantised KV cache").
#include "engine/kv_codec.h"

#include <immintrin.h>

namespace mla::detail {
namespace {

// 16 codes from 8 bytes, element order (element 2j in the low nibble of byte j), as two vectors of 8 floats.
inline void unpackNibbles(const std::uint8_t* bytes, __m256& lo, __m256& hi)
{
    const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i low = _mm_and_si128(packed, mask);
    const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    const __m128i ordered = _mm_unpacklo_epi8(low, high); // n0 n1 n2 ... n15
    lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(ordered));
    hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(ordered, 8)));
}

void int4Avx2(const std::uint8_t* data, std::int64_t first, std::int64_t n, float scale, float offset, float* out)
{
    std::int64_t i = 0;
    if (first % 2 != 0 && n > 0) { // a group that starts in the high nibble of a byte
        out[0] = offset + scale * static_cast<float>(data[first / 2] >> 4);
        i = 1;
    }
    const __m256 s = _mm256_set1_ps(scale);
    const __m256 m = _mm256_set1_ps(offset);
    for (; i + 16 <= n; i += 16) {
        __m256 lo, hi;
        unpackNibbles(data + (first + i) / 2, lo, hi);
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(lo, s, m));
        _mm256_storeu_ps(out + i + 8, _mm256_fmadd_ps(hi, s, m));
    }
    for (; i < n; ++i) {
        const std::int64_t e = first + i;
        const int nibble = (e % 2 == 0) ? (data[e / 2] & 0x0f) : (data[e / 2] >> 4);
        out[i] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(static_cast<float>(nibble)), _mm_set_ss(scale), _mm_set_ss(offset)));
    }
}

void int8Avx2(const std::uint8_t* data, std::int64_t n, float scale, float offset, float* out)
{
    const __m256 s = _mm256_set1_ps(scale);
    const __m256 m = _mm256_set1_ps(offset);
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i codes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(data + i));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes)), s, m));
    }
    for (; i < n; ++i)
        out[i] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(static_cast<float>(data[i])), _mm_set_ss(scale), _mm_set_ss(offset)));
}

void bf16Avx2(const std::uint8_t* data, std::int64_t n, float* out)
{
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 2 * i)));
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    }
    for (; i < n; ++i) {
        const std::uint32_t bits = static_cast<std::uint32_t>(data[2 * i] | (data[2 * i + 1] << 8)) << 16;
        float f;
        __builtin_memcpy(&f, &bits, sizeof f);
        out[i] = f;
    }
}

} // namespace

const KvCodecKernels* avx2KvCodec()
{
    static const KvCodecKernels k{int4Avx2, int8Avx2, bf16Avx2};
    return &k;
}

} // namespace mla::detail
