#pragma once

#include <cstddef>

// The plain-pointer boundary between dense_kernels.cpp and dense_kernels_avx2.cpp, which is compiled for AVX2 + FMA
// with its own copy of Eigen (see there); so no Eigen type may appear here.
namespace mla::detail {

// C = beta C + alpha op(A) op(B), column-major, for double (the spectral pipeline) and float (attention and the
// allocation's candidate errors).
template <typename Scalar>
struct GemmArgsOf {
    Scalar* c;
    std::ptrdiff_t ldc, m, n, k; // c is m x n; op(a) m x k; op(b) k x n
    const Scalar* a;
    std::ptrdiff_t lda;
    bool transA;
    const Scalar* b;
    std::ptrdiff_t ldb;
    bool transB;
    Scalar alpha, beta;
};
using GemmArgs = GemmArgsOf<double>;
using GemmArgsF = GemmArgsOf<float>;

// For the columns c in [c0, c1) of the symmetric matrix whose lower triangle is at s (size x size, stride ld):
// y[c] += s[c][c] x[c] + sum_{r > c} s[r][c] x[r] and y[r] += s[r][c] x[c] for r > c.
struct SymvColumnsArgs {
    const double* s;
    std::ptrdiff_t ld, size, c0, c1;
    const double* x;
    double* y;
};

struct DenseKernelTable {
    void (*gemm)(const GemmArgs&);
    void (*gemmF)(const GemmArgsF&);
    void (*symvColumns)(const SymvColumnsArgs&);
};

// Null where the compiler cannot build the AVX2 variant.
const DenseKernelTable* avx2DenseKernels();

} // namespace mla::detail
