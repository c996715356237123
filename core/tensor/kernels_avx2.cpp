// Compiled with -mavx2 -mfma -mf16c; only called after the CPU has been checked for those features.
#include "tensor/kernels.h"

#include <immintrin.h>

#include <cstdint>

namespace mla::detail {
namespace {

inline __m256 loadF32(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 loadF16(const std::uint16_t* p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 loadBF16(const std::uint16_t* p)
{
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

inline float horizontalSum(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    shuf = _mm_movehl_ps(shuf, sums);
    sums = _mm_add_ss(sums, shuf);
    return _mm_cvtss_f32(sums);
}

struct F32Row {
    using Element = float;
    static __m256 load(const Element* p) { return loadF32(p); }
    static float scalar(const Element* p) { return *p; }
};
struct F16Row {
    using Element = std::uint16_t;
    static __m256 load(const Element* p) { return loadF16(p); }
    static float scalar(const Element* p) { return _cvtsh_ss(*p); }
};
struct BF16Row {
    using Element = std::uint16_t;
    static __m256 load(const Element* p) { return loadBF16(p); }
    static float scalar(const Element* p)
    {
        const std::uint32_t bits = static_cast<std::uint32_t>(*p) << 16;
        float f;
        __builtin_memcpy(&f, &bits, 4);
        return f;
    }
};

// Four rows at a time share each load of x; two accumulators per row hide the FMA latency.
template <typename Row>
void dotRows(const void* rowsData, std::size_t cols, std::size_t rowCount, const float* x, float* out)
{
    using E = typename Row::Element;
    const E* rows = static_cast<const E*>(rowsData);
    std::size_t r = 0;
    for (; r + 4 <= rowCount; r += 4) {
        const E* r0 = rows + r * cols;
        const E* r1 = r0 + cols;
        const E* r2 = r1 + cols;
        const E* r3 = r2 + cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
        std::size_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + c);
            const __m256 x1 = _mm256_loadu_ps(x + c + 8);
            a0 = _mm256_fmadd_ps(Row::load(r0 + c), x0, a0);
            a1 = _mm256_fmadd_ps(Row::load(r1 + c), x0, a1);
            a2 = _mm256_fmadd_ps(Row::load(r2 + c), x0, a2);
            a3 = _mm256_fmadd_ps(Row::load(r3 + c), x0, a3);
            b0 = _mm256_fmadd_ps(Row::load(r0 + c + 8), x1, b0);
            b1 = _mm256_fmadd_ps(Row::load(r1 + c + 8), x1, b1);
            b2 = _mm256_fmadd_ps(Row::load(r2 + c + 8), x1, b2);
            b3 = _mm256_fmadd_ps(Row::load(r3 + c + 8), x1, b3);
        }
        for (; c + 8 <= cols; c += 8) {
            const __m256 x0 = _mm256_loadu_ps(x + c);
            a0 = _mm256_fmadd_ps(Row::load(r0 + c), x0, a0);
            a1 = _mm256_fmadd_ps(Row::load(r1 + c), x0, a1);
            a2 = _mm256_fmadd_ps(Row::load(r2 + c), x0, a2);
            a3 = _mm256_fmadd_ps(Row::load(r3 + c), x0, a3);
        }
        float s0 = horizontalSum(_mm256_add_ps(a0, b0));
        float s1 = horizontalSum(_mm256_add_ps(a1, b1));
        float s2 = horizontalSum(_mm256_add_ps(a2, b2));
        float s3 = horizontalSum(_mm256_add_ps(a3, b3));
        for (; c < cols; ++c) {
            s0 += Row::scalar(r0 + c) * x[c];
            s1 += Row::scalar(r1 + c) * x[c];
            s2 += Row::scalar(r2 + c) * x[c];
            s3 += Row::scalar(r3 + c) * x[c];
        }
        out[r] = s0;
        out[r + 1] = s1;
        out[r + 2] = s2;
        out[r + 3] = s3;
    }
    for (; r < rowCount; ++r) {
        const E* row = rows + r * cols;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        std::size_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            a = _mm256_fmadd_ps(Row::load(row + c), _mm256_loadu_ps(x + c), a);
            b = _mm256_fmadd_ps(Row::load(row + c + 8), _mm256_loadu_ps(x + c + 8), b);
        }
        for (; c + 8 <= cols; c += 8)
            a = _mm256_fmadd_ps(Row::load(row + c), _mm256_loadu_ps(x + c), a);
        float s = horizontalSum(_mm256_add_ps(a, b));
        for (; c < cols; ++c)
            s += Row::scalar(row + c) * x[c];
        out[r] = s;
    }
}

template <typename Row>
void toFloat(const void* srcData, float* dst, std::size_t n)
{
    using E = typename Row::Element;
    const E* src = static_cast<const E*>(srcData);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, Row::load(src + i));
    for (; i < n; ++i)
        dst[i] = Row::scalar(src + i);
}

double sum(const float* data, std::size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(data + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(data + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(data + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(data + i + 24));
    }
    double s = horizontalSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i)
        s += data[i];
    return s;
}

const KernelTable kTable{{toFloat<F32Row>, toFloat<F16Row>, toFloat<BF16Row>},
                         {dotRows<F32Row>, dotRows<F16Row>, dotRows<BF16Row>},
                         sum};

} // namespace

const KernelTable* avx2Kernels()
{
    return &kTable;
}

} // namespace mla::detail
