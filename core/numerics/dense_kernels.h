#pragma once

#include <Eigen/Core>

// The kernels that carry the spectral pipeline, dispatched at run time: the double GEMMs (Gram matrix, trailing
// updates of the tridiagonal reduction, back-transformation, products with M) and the column kernel of the symmetric
// matrix-vector product (the memory-bound half of the reduction). The project builds for baseline x86-64, where
// Eigen's kernels use SSE2 only; on a CPU with AVX2 and FMA the same Eigen GEMM compiled for those runs about 2.4x as
// fast (measured: docs/numerics.md).
namespace mla {

enum class Op { None, Transpose };

// dst = beta * dst + alpha * op(a) * op(b), column-major blocks with unit inner stride (any outer stride). Parallel
// over the cores like Eigen's own GEMM, or on the calling thread inside a parallel region.
void gemm(Eigen::Ref<Eigen::MatrixXd> dst, double alpha, const Eigen::Ref<const Eigen::MatrixXd>& a, Op opA,
          const Eigen::Ref<const Eigen::MatrixXd>& b, Op opB, double beta);

// The same in float, always on the calling thread (attention and the allocation's candidate errors: many small
// products inside their own parallel loops, with results that must not depend on the thread count).
void gemm(Eigen::Ref<Eigen::MatrixXf> dst, float alpha, const Eigen::Ref<const Eigen::MatrixXf>& a, Op opA,
          const Eigen::Ref<const Eigen::MatrixXf>& b, Op opB, float beta);

// c = alpha a b + beta c for whole row-major matrices a [m, k], b [k, n], c [m, n], on the kernels above (read
// column-major, row-major data is the transpose, so this is c^T = b^T a^T).
using RowMajorMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
void gemmRowMajor(RowMajorMatrixXd& c, double alpha, const RowMajorMatrixXd& a, const RowMajorMatrixXd& b, double beta);

// c = op(a) op(b) + beta c for row-major float operands: matrices, blocks or maps with unit inner stride (read
// column-major, row-major data is the transpose, so the kernel computes c^T = op(b)^T op(a)^T). What the engine's
// attention and the allocation's candidate errors multiply: this build's own float GEMM is Eigen's SSE2 one.
template <typename C, typename A, typename B>
void productRowMajor(C&& c, const A& a, Op opA, const B& b, Op opB, float beta)
{
    using View = Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
    using ConstView = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
    View ct(c.data(), c.cols(), c.rows(), Eigen::OuterStride<>(c.outerStride()));
    const ConstView at(a.data(), a.cols(), a.rows(), Eigen::OuterStride<>(a.outerStride()));
    const ConstView bt(b.data(), b.cols(), b.rows(), Eigen::OuterStride<>(b.outerStride()));
    gemm(ct, 1.0f, bt, opB, at, opA, beta);
}

// The columns [c0, c1) of y += S x for the symmetric S stored in its lower triangle at s (size x size, stride ld):
// each stored entry is read once and used twice (y[c] gets the dot product, y[r > c] the axpy).
void lowerSymvColumns(const double* s, Eigen::Index ld, Eigen::Index size, Eigen::Index c0, Eigen::Index c1, const double* x,
                      double* y);

// "avx2+fma" or "generic": which build of the kernels runs now.
const char* denseKernelInstructionSet();

// For tests and benchmarks: false restricts the kernels to the generic build, true (the default) allows AVX2 where the
// CPU has it.
void allowAvx2DenseKernels(bool allow);

} // namespace mla
