// Eigen's GEMM and a fused symmetric matrix-vector column kernel compiled for AVX2 + FMA, called only after the CPU has
// been checked (dense_kernels.cpp).
//
// Why this file looks unusual: core is built for baseline x86-64 and Eigen chooses its SIMD kernels from the compiler's
// target macros, so a second, AVX2 build of Eigen must live in its own translation unit. Two rules keep it from
// clashing with the SSE2 build everywhere else:
//  1. Eigen is included under another namespace name (`#define Eigen mla_eigen_avx2`), so none of its template
//     instantiations or inline functions share a symbol with the default build; the linker can never pick an AVX2
//     body for SSE2 code. No project header (which would pull in the real Eigen) is included after the rename.
//  2. Every standard header Eigen uses is included before `#pragma GCC target`: templates take the target options of
//     their definition, so std instantiations made here stay baseline code, identical to everyone else's.
#include "numerics/dense_kernel_table.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cfloat>
#include <climits>
#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iosfwd>
#include <iostream>
#include <limits>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <immintrin.h>
#include <omp.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
// The pragma lets GCC emit AVX2 and FMA code, but (unlike -mavx2 -mfma) it does not define the feature macros by which
// Eigen selects its packet types and GEMM kernels; define them for the rest of this file.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __SSE3__
#define __SSE3__ 1
#endif
#ifndef __SSSE3__
#define __SSSE3__ 1
#endif
#ifndef __SSE4_1__
#define __SSE4_1__ 1
#endif
#ifndef __SSE4_2__
#define __SSE4_2__ 1
#endif
#define Eigen mla_eigen_avx2
#include <Eigen/Core>
static_assert(mla_eigen_avx2::internal::packet_traits<double>::size == 4, "Eigen did not select its AVX kernels");
static_assert(mla_eigen_avx2::internal::packet_traits<float>::size == 8, "Eigen did not select its AVX kernels");

namespace mla::detail {
namespace {

template <typename Scalar>
void gemmAvx2(const GemmArgsOf<Scalar>& g)
{
    using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<Matrix, 0, Eigen::OuterStride<>> c(g.c, g.m, g.n, Eigen::OuterStride<>(g.ldc));
    if (g.beta == Scalar(0))
        c.setZero();
    else if (g.beta != Scalar(1))
        c *= g.beta;
    if (g.k == 0 || g.alpha == Scalar(0))
        return;
    using ConstBlock = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
    const ConstBlock a(g.a, g.transA ? g.k : g.m, g.transA ? g.m : g.k, Eigen::OuterStride<>(g.lda));
    const ConstBlock b(g.b, g.transB ? g.n : g.k, g.transB ? g.k : g.n, Eigen::OuterStride<>(g.ldb));
    if (!g.transA && !g.transB)
        c.noalias() += g.alpha * a * b;
    else if (g.transA && !g.transB)
        c.noalias() += g.alpha * a.transpose() * b;
    else if (!g.transA && g.transB)
        c.noalias() += g.alpha * a * b.transpose();
    else
        c.noalias() += g.alpha * a.transpose() * b.transpose();
}

// One pass over each column: the stored entries feed both the dot product (into y[c]) and the axpy (into y[r > c]).
// Two accumulators over eight entries a step keep the FMA latency of the dot product hidden.
void symvColumnsAvx2(const SymvColumnsArgs& g)
{
    for (std::ptrdiff_t c = g.c0; c < g.c1; ++c) {
        const double* col = g.s + c * g.ld;
        const double xc = g.x[c];
        const __m256d xcv = _mm256_set1_pd(xc);
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        std::ptrdiff_t r = c + 1;
        for (; r + 8 <= g.size; r += 8) {
            const __m256d a0 = _mm256_loadu_pd(col + r);
            const __m256d a1 = _mm256_loadu_pd(col + r + 4);
            acc0 = _mm256_fmadd_pd(a0, _mm256_loadu_pd(g.x + r), acc0);
            acc1 = _mm256_fmadd_pd(a1, _mm256_loadu_pd(g.x + r + 4), acc1);
            _mm256_storeu_pd(g.y + r, _mm256_fmadd_pd(a0, xcv, _mm256_loadu_pd(g.y + r)));
            _mm256_storeu_pd(g.y + r + 4, _mm256_fmadd_pd(a1, xcv, _mm256_loadu_pd(g.y + r + 4)));
        }
        const __m256d acc = _mm256_add_pd(acc0, acc1);
        const __m128d half = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
        double dot = _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)));
        for (; r < g.size; ++r) {
            dot += col[r] * g.x[r];
            g.y[r] += col[r] * xc;
        }
        g.y[c] += col[c] * xc + dot;
    }
}

} // namespace
} // namespace mla::detail

#undef Eigen
#pragma GCC pop_options

namespace mla::detail {

// Outside the AVX2 region: the caller may run this before it has checked the CPU.
const DenseKernelTable* avx2DenseKernels()
{
    static const DenseKernelTable table{&gemmAvx2<double>, &gemmAvx2<float>, &symvColumnsAvx2};
    return &table;
}

} // namespace mla::detail

#else

namespace mla::detail {
const DenseKernelTable* avx2DenseKernels() { return nullptr; }
} // namespace mla::detail

#endif
