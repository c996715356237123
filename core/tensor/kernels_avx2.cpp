// Compiled with -mavx2 -mfma -mf16c; only called after the CPU has been checked for those features.
#include "tensor/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

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

// One row at a time, streamed front to back with four accumulators (which also hide the FMA latency). Interleaving
// several rows to share the loads of x (which sits in L1 anyway) streams at only about 0.85 of this on the 2-core
// machines: the memory system serves one sequential stream per core better than four interleaved ones.
template <typename Row>
void dotRows(const void* rowsData, std::size_t cols, std::size_t rowCount, const float* x, float* out)
{
    using E = typename Row::Element;
    const E* rows = static_cast<const E*>(rowsData);
    for (std::size_t r = 0; r < rowCount; ++r) {
        const E* row = rows + r * cols;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), c2 = _mm256_setzero_ps(), d = _mm256_setzero_ps();
        std::size_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            a = _mm256_fmadd_ps(Row::load(row + c), _mm256_loadu_ps(x + c), a);
            b = _mm256_fmadd_ps(Row::load(row + c + 8), _mm256_loadu_ps(x + c + 8), b);
            c2 = _mm256_fmadd_ps(Row::load(row + c + 16), _mm256_loadu_ps(x + c + 16), c2);
            d = _mm256_fmadd_ps(Row::load(row + c + 24), _mm256_loadu_ps(x + c + 24), d);
        }
        for (; c + 8 <= cols; c += 8)
            a = _mm256_fmadd_ps(Row::load(row + c), _mm256_loadu_ps(x + c), a);
        float sum = horizontalSum(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c2, d)));
        for (; c < cols; ++c)
            sum += Row::scalar(row + c) * x[c];
        out[r] = sum;
    }
}

// dot(row, x) for three tokens at once, each computed exactly as dotRows<F32Row> computes it (the same four
// accumulators over the same columns, the same final sums). 12 accumulators and 4 weight registers fill the 16 AVX2
// registers; each weight load serves three tokens.
inline void dotRowThreeTokens(const float* row, std::size_t cols, const float* x0, const float* x1, const float* x2,
                              float& y0, float& y1, float& y2)
{
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, d0 = a0;
    __m256 a1 = a0, b1 = a0, c1 = a0, d1 = a0;
    __m256 a2 = a0, b2 = a0, c2 = a0, d2 = a0;
    std::size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        const __m256 w0 = _mm256_load_ps(row + c), w1 = _mm256_load_ps(row + c + 8);
        const __m256 w2 = _mm256_load_ps(row + c + 16), w3 = _mm256_load_ps(row + c + 24);
        a0 = _mm256_fmadd_ps(w0, _mm256_load_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(w0, _mm256_load_ps(x1 + c), a1);
        a2 = _mm256_fmadd_ps(w0, _mm256_load_ps(x2 + c), a2);
        b0 = _mm256_fmadd_ps(w1, _mm256_load_ps(x0 + c + 8), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_load_ps(x1 + c + 8), b1);
        b2 = _mm256_fmadd_ps(w1, _mm256_load_ps(x2 + c + 8), b2);
        c0 = _mm256_fmadd_ps(w2, _mm256_load_ps(x0 + c + 16), c0);
        c1 = _mm256_fmadd_ps(w2, _mm256_load_ps(x1 + c + 16), c1);
        c2 = _mm256_fmadd_ps(w2, _mm256_load_ps(x2 + c + 16), c2);
        d0 = _mm256_fmadd_ps(w3, _mm256_load_ps(x0 + c + 24), d0);
        d1 = _mm256_fmadd_ps(w3, _mm256_load_ps(x1 + c + 24), d1);
        d2 = _mm256_fmadd_ps(w3, _mm256_load_ps(x2 + c + 24), d2);
    }
    for (; c + 8 <= cols; c += 8) {
        const __m256 w = _mm256_load_ps(row + c);
        a0 = _mm256_fmadd_ps(w, _mm256_load_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(w, _mm256_load_ps(x1 + c), a1);
        a2 = _mm256_fmadd_ps(w, _mm256_load_ps(x2 + c), a2);
    }
    float s0 = horizontalSum(_mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(c0, d0)));
    float s1 = horizontalSum(_mm256_add_ps(_mm256_add_ps(a1, b1), _mm256_add_ps(c1, d1)));
    float s2 = horizontalSum(_mm256_add_ps(_mm256_add_ps(a2, b2), _mm256_add_ps(c2, d2)));
    for (; c < cols; ++c) {
        const float w = row[c];
        s0 += w * x0[c];
        s1 += w * x1[c];
        s2 += w * x2[c];
    }
    y0 = s0;
    y1 = s1;
    y2 = s2;
}

// dotRowThreeTokens for two tokens (8 accumulators): a batch whose size leaves one token over after the groups of
// three takes two pairs instead, since one token alone keeps only four FMAs in flight. Written out like its twin, not
// one template over the token count with arrays of accumulators: GCC's code for that template ran 8-12% slower on the
// vocabulary head of the SmolLM-135M shape (16 tokens, one and two cores), whichever order its loops took.
inline void dotRowTwoTokens(const float* row, std::size_t cols, const float* x0, const float* x1, float& y0, float& y1)
{
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, d0 = a0;
    __m256 a1 = a0, b1 = a0, c1 = a0, d1 = a0;
    std::size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        const __m256 w0 = _mm256_load_ps(row + c), w1 = _mm256_load_ps(row + c + 8);
        const __m256 w2 = _mm256_load_ps(row + c + 16), w3 = _mm256_load_ps(row + c + 24);
        a0 = _mm256_fmadd_ps(w0, _mm256_load_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(w0, _mm256_load_ps(x1 + c), a1);
        b0 = _mm256_fmadd_ps(w1, _mm256_load_ps(x0 + c + 8), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_load_ps(x1 + c + 8), b1);
        c0 = _mm256_fmadd_ps(w2, _mm256_load_ps(x0 + c + 16), c0);
        c1 = _mm256_fmadd_ps(w2, _mm256_load_ps(x1 + c + 16), c1);
        d0 = _mm256_fmadd_ps(w3, _mm256_load_ps(x0 + c + 24), d0);
        d1 = _mm256_fmadd_ps(w3, _mm256_load_ps(x1 + c + 24), d1);
    }
    for (; c + 8 <= cols; c += 8) {
        const __m256 w = _mm256_load_ps(row + c);
        a0 = _mm256_fmadd_ps(w, _mm256_load_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(w, _mm256_load_ps(x1 + c), a1);
    }
    float s0 = horizontalSum(_mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(c0, d0)));
    float s1 = horizontalSum(_mm256_add_ps(_mm256_add_ps(a1, b1), _mm256_add_ps(c1, d1)));
    for (; c < cols; ++c) {
        const float w = row[c];
        s0 += w * x0[c];
        s1 += w * x1[c];
    }
    y0 = s0;
    y1 = s1;
}

// A 64-byte aligned view of a thread's scratch buffer of at least `count` floats.
float* alignedScratch(std::vector<float>& buffer, std::size_t count)
{
    if (buffer.size() < count + 16)
        buffer.resize(count + 16);
    const auto address = reinterpret_cast<std::uintptr_t>(buffer.data());
    return buffer.data() + ((64 - address % 64) % 64) / sizeof(float);
}

// dotRows for several tokens: Y[t * ldy + r] = dot(row r, X[t * ldx]), each computed exactly as dotRows<Row> computes
// it, so a batch of tokens gets the matrix-vector product's results bit for bit. A sub-block of weight rows (about
// 16 KiB) is converted to float32 once into an aligned buffer (the values Row::load gives, so the products are the
// same) and the tokens, copied to aligned rows too, pass over it three at a time: aligned loads never split a cache
// line, and the weights are read from memory once for all tokens.
template <typename Row>
void dotRowsTokens(const void* rowsData, std::size_t cols, std::size_t rowCount, const float* X, std::size_t ldx,
                   std::size_t n, float* Y, std::size_t ldy)
{
    if (n == 0 || rowCount == 0)
        return;
    using E = typename Row::Element;
    const E* rows = static_cast<const E*>(rowsData);
    const std::size_t stride = (cols + 15) / 16 * 16;
    thread_local std::vector<float> tokenBuffer, rowBuffer;
    float* x = alignedScratch(tokenBuffer, n * stride);
    for (std::size_t t = 0; t < n; ++t)
        std::copy(X + t * ldx, X + t * ldx + cols, x + t * stride);
    const std::size_t sub = std::max<std::size_t>(1, (16u << 10) / (stride * sizeof(float)));
    float* w = alignedScratch(rowBuffer, sub * stride);
    for (std::size_t r0 = 0; r0 < rowCount; r0 += sub) {
        const std::size_t count = std::min(rowCount - r0, sub);
        for (std::size_t r = 0; r < count; ++r) {
            const E* source = rows + (r0 + r) * cols;
            float* target = w + r * stride;
            std::size_t c = 0;
            for (; c + 8 <= cols; c += 8)
                _mm256_store_ps(target + c, Row::load(source + c));
            for (; c < cols; ++c)
                target[c] = Row::scalar(source + c);
        }
        // The next sub-block's rows are fetched while the tokens pass over this one: with a decode batch the weights
        // stream from memory once per step, and reading them only when converted left the memory and the FMAs taking
        // turns (on the 2-core machine the head of the SmolLM-135M shape, 16 tokens: 22.6 ms a call, 17.1 ms with
        // this, 15.4 ms with the weights in cache).
        const auto* next = reinterpret_cast<const char*>(rows + (r0 + count) * cols);
        const std::size_t nextBytes = std::min(rowCount - r0 - count, sub) * cols * sizeof(E);
        // Groups of three tokens, then what is left as pairs (four left: two pairs) or one token alone.
        const std::size_t triples = n >= 4 && n % 3 == 1 ? n / 3 - 1 : n / 3;
        const std::size_t pairs = (n - 3 * triples) / 2;
        const std::size_t steps = (triples + pairs + (n - 3 * triples) % 2) * count;
        const std::size_t linesPerStep = (nextBytes / 64 + steps) / steps;
        std::size_t prefetched = 0;
        const auto prefetchSome = [&] {
            for (std::size_t i = 0; i < linesPerStep && prefetched < nextBytes; ++i, prefetched += 64)
                _mm_prefetch(next + prefetched, _MM_HINT_T0);
        };
        std::size_t t = 0;
        for (; t < 3 * triples; t += 3) {
            const float* x0 = x + t * stride;
            for (std::size_t r = 0; r < count; ++r) {
                prefetchSome();
                dotRowThreeTokens(w + r * stride, cols, x0, x0 + stride, x0 + 2 * stride, Y[t * ldy + r0 + r],
                                  Y[(t + 1) * ldy + r0 + r], Y[(t + 2) * ldy + r0 + r]);
            }
        }
        for (; t + 2 <= n; t += 2) {
            const float* x0 = x + t * stride;
            for (std::size_t r = 0; r < count; ++r) {
                prefetchSome();
                dotRowTwoTokens(w + r * stride, cols, x0, x0 + stride, Y[t * ldy + r0 + r], Y[(t + 1) * ldy + r0 + r]);
            }
        }
        for (; t < n; ++t) {
            for (std::size_t r = 0; r < count; ++r) {
                prefetchSome();
                dotRows<F32Row>(w + r * stride, cols, 1, x + t * stride, Y + t * ldy + r0 + r);
            }
        }
    }
}

// BF16 rows, one at a time like dotRows. A 32-bit lane of 16 loaded bf16 values holds an even element in its low half
// and an odd one in its high half: shifting left by 16 gives the even elements as float32, masking the low half gives
// the odd ones. So x is first split, per 16 columns, into its 8 even then its 8 odd elements (once per call; the caller
// passes many rows), and each 16 columns cost one load, one shift, one and and two FMAs.
void dotRowsBF16(const void* rowsData, std::size_t cols, std::size_t rowCount, const float* x, float* out)
{
    const auto* rows = static_cast<const std::uint16_t*>(rowsData);
    const std::size_t blocked = cols / 16 * 16;
    thread_local std::vector<float> split;
    split.resize(blocked);
    for (std::size_t c = 0; c < blocked; c += 16)
        for (std::size_t i = 0; i < 8; ++i) {
            split[c + i] = x[c + 2 * i];
            split[c + 8 + i] = x[c + 2 * i + 1];
        }
    const float* xs = split.data();
    const __m256i oddMask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    const auto even = [](__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); };
    const auto odd = [&](__m256i v) { return _mm256_castsi256_ps(_mm256_and_si256(v, oddMask)); };
    const auto load = [](const std::uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    for (std::size_t r = 0; r < rowCount; ++r) {
        const std::uint16_t* row = rows + r * cols;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), c2 = _mm256_setzero_ps(), d = _mm256_setzero_ps();
        std::size_t c = 0;
        for (; c + 32 <= blocked; c += 32) {
            const __m256i w0 = load(row + c), w1 = load(row + c + 16);
            a = _mm256_fmadd_ps(even(w0), _mm256_loadu_ps(xs + c), a);
            b = _mm256_fmadd_ps(odd(w0), _mm256_loadu_ps(xs + c + 8), b);
            c2 = _mm256_fmadd_ps(even(w1), _mm256_loadu_ps(xs + c + 16), c2);
            d = _mm256_fmadd_ps(odd(w1), _mm256_loadu_ps(xs + c + 24), d);
        }
        for (; c < blocked; c += 16) {
            const __m256i w = load(row + c);
            a = _mm256_fmadd_ps(even(w), _mm256_loadu_ps(xs + c), a);
            b = _mm256_fmadd_ps(odd(w), _mm256_loadu_ps(xs + c + 8), b);
        }
        float sum = horizontalSum(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c2, d)));
        for (; c < cols; ++c)
            sum += BF16Row::scalar(row + c) * x[c];
        out[r] = sum;
    }
}

// Prefill GEMM. A panel of 16 weight rows is converted to float32 once and stored column-major
// (packed[k * 16 + j] = W[j, k]); a register-blocked kernel then multiplies it by up to 6 tokens at a time:
// 12 accumulators (6 tokens x 16 outputs), each column of the panel costs 2 loads, 6 broadcasts and 12 FMAs.
constexpr std::size_t kPanel = 16;
constexpr std::size_t kTokens = 6;

template <std::size_t M>
void gemmTile(const float* packed, std::size_t cols, const float* X, std::size_t ldx, float* Y, std::size_t ldy,
              std::size_t width)
{
    __m256 lo[M], hi[M];
#pragma GCC unroll 8
    for (std::size_t m = 0; m < M; ++m) {
        lo[m] = _mm256_setzero_ps();
        hi[m] = _mm256_setzero_ps();
    }
    for (std::size_t k = 0; k < cols; ++k) {
        const __m256 w0 = _mm256_loadu_ps(packed + k * kPanel);
        const __m256 w1 = _mm256_loadu_ps(packed + k * kPanel + 8);
    #pragma GCC unroll 8
    for (std::size_t m = 0; m < M; ++m) {
            const __m256 xv = _mm256_broadcast_ss(X + m * ldx + k);
            lo[m] = _mm256_fmadd_ps(w0, xv, lo[m]);
            hi[m] = _mm256_fmadd_ps(w1, xv, hi[m]);
        }
    }
#pragma GCC unroll 8
    for (std::size_t m = 0; m < M; ++m) {
        float* y = Y + m * ldy;
        if (width == kPanel) {
            _mm256_storeu_ps(y, lo[m]);
            _mm256_storeu_ps(y + 8, hi[m]);
        } else {
            alignas(32) float tmp[kPanel];
            _mm256_store_ps(tmp, lo[m]);
            _mm256_store_ps(tmp + 8, hi[m]);
            for (std::size_t j = 0; j < width; ++j)
                y[j] = tmp[j];
        }
    }
}

// Transposes 8 vectors of 8 floats in place: afterwards v[c][i] is the former v[i][c].
inline void transpose8x8(__m256 v[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

// packed[k * kPanel + j] = float(rows[j][k]) for the first `width` rows, zero for the rest of the panel; blocks of
// 8 rows x 8 columns are converted and transposed in registers.
template <typename Row>
void packPanel(const typename Row::Element* rows, std::size_t cols, std::size_t width, float* packed)
{
    const std::size_t blocked = cols / 8 * 8;
    for (std::size_t j0 = 0; j0 < kPanel; j0 += 8) {
        for (std::size_t k = 0; k < blocked; k += 8) {
            __m256 v[8];
            for (std::size_t i = 0; i < 8; ++i)
                v[i] = j0 + i < width ? Row::load(rows + (j0 + i) * cols + k) : _mm256_setzero_ps();
            transpose8x8(v);
            for (std::size_t c = 0; c < 8; ++c)
                _mm256_storeu_ps(packed + (k + c) * kPanel + j0, v[c]);
        }
        for (std::size_t k = blocked; k < cols; ++k)
            for (std::size_t i = 0; i < 8; ++i)
                packed[k * kPanel + j0 + i] = j0 + i < width ? Row::scalar(rows + (j0 + i) * cols + k) : 0.0f;
    }
}

template <typename Row>
void gemmRows(const void* rowsData, std::size_t cols, std::size_t rowCount, const float* X, std::size_t ldx,
              std::size_t n, float* Y, std::size_t ldy)
{
    using E = typename Row::Element;
    const E* rows = static_cast<const E*>(rowsData);
    thread_local std::vector<float> packed;
    packed.resize(cols * kPanel);
    for (std::size_t first = 0; first < rowCount; first += kPanel) {
        const std::size_t width = std::min(kPanel, rowCount - first);
        packPanel<Row>(rows + first * cols, cols, width, packed.data());
        std::size_t t = 0;
        for (; t + kTokens <= n; t += kTokens)
            gemmTile<kTokens>(packed.data(), cols, X + t * ldx, ldx, Y + t * ldy + first, ldy, width);
        const float* xt = X + t * ldx;
        float* yt = Y + t * ldy + first;
        switch (n - t) {
        case 5: gemmTile<5>(packed.data(), cols, xt, ldx, yt, ldy, width); break;
        case 4: gemmTile<4>(packed.data(), cols, xt, ldx, yt, ldy, width); break;
        case 3: gemmTile<3>(packed.data(), cols, xt, ldx, yt, ldy, width); break;
        case 2: gemmTile<2>(packed.data(), cols, xt, ldx, yt, ldy, width); break;
        case 1: gemmTile<1>(packed.data(), cols, xt, ldx, yt, ldy, width); break;
        default: break;
        }
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
                         {dotRows<F32Row>, dotRows<F16Row>, dotRowsBF16},
                         {gemmRows<F32Row>, gemmRows<F16Row>, gemmRows<BF16Row>},
                         {dotRowsTokens<F32Row>, dotRowsTokens<F16Row>, nullptr},
                         sum};

} // namespace

const KernelTable* avx2Kernels()
{
    return &kTable;
}

} // namespace mla::detail
