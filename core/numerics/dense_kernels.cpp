#include "numerics/dense_kernels.h"

#include "numerics/dense_kernel_table.h"
#include "util/error.h"

#include <atomic>

#include <omp.h>

#include <algorithm>

namespace mla {
namespace {

std::atomic<bool> g_allowAvx2{true};

const detail::DenseKernelTable* activeTable()
{
    static const detail::DenseKernelTable* avx2 = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return detail::avx2DenseKernels();
        return static_cast<const detail::DenseKernelTable*>(nullptr);
    }();
    return g_allowAvx2.load(std::memory_order_relaxed) ? avx2 : nullptr;
}

// Eigen's GEMM (either build), when it splits a product over threads, also changes its depth blocking and so its
// summation order. With the calling thread's thread count at 1 for the call it runs serially with the blocking of
// one thread, whatever OMP_NUM_THREADS says. The count (nthreads-var) belongs to the calling task's data environment
// in OpenMP: other threads, and parallel regions around the caller, keep theirs; it is restored after the call.
class SerialEigenProducts {
public:
    SerialEigenProducts() { omp_set_num_threads(1); }
    ~SerialEigenProducts() { omp_set_num_threads(m_saved); }
    SerialEigenProducts(const SerialEigenProducts&) = delete;
    SerialEigenProducts& operator=(const SerialEigenProducts&) = delete;

private:
    int m_saved = omp_get_max_threads();
};

// The fallback is Eigen's own GEMM of the default (SSE2) build.
template <typename Scalar, typename Args, typename Kernel>
void gemmImpl(Eigen::Ref<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> dst, Scalar alpha,
              const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& a, Op opA,
              const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& b, Op opB, Scalar beta, Kernel kernel)
{
    const bool ta = opA == Op::Transpose;
    const bool tb = opB == Op::Transpose;
    const Eigen::Index m = ta ? a.cols() : a.rows();
    const Eigen::Index k = ta ? a.rows() : a.cols();
    const Eigen::Index kb = tb ? b.cols() : b.rows();
    const Eigen::Index n = tb ? b.rows() : b.cols();
    if (m != dst.rows() || n != dst.cols() || k != kb)
        throw Error("internal: GEMM shapes do not match");
    if (const detail::DenseKernelTable* table = activeTable()) {
        (table->*kernel)(Args{dst.data(), dst.outerStride(), m, n, k, a.data(), a.outerStride(), ta, b.data(), b.outerStride(), tb, alpha, beta});
        return;
    }
    if (beta == 0)
        dst.setZero();
    else if (beta != 1)
        dst *= beta;
    if (k == 0 || alpha == 0)
        return;
    if (!ta && !tb)
        dst.noalias() += alpha * a * b;
    else if (ta && !tb)
        dst.noalias() += alpha * a.transpose() * b;
    else if (!ta && tb)
        dst.noalias() += alpha * a * b.transpose();
    else
        dst.noalias() += alpha * a.transpose() * b.transpose();
}

} // namespace

void gemm(Eigen::Ref<Eigen::MatrixXd> dst, double alpha, const Eigen::Ref<const Eigen::MatrixXd>& a, Op opA,
          const Eigen::Ref<const Eigen::MatrixXd>& b, Op opB, double beta)
{
    // Double products stay parallel (the decompositions' large products need both cores), so the depth is cut here
    // into fixed slices no deeper than Eigen's depth block with or without threads (248 with a 32 KiB L1) and added
    // in order: each slice is one depth block either way, so the sums, and every decomposition built on them, do not
    // depend on the number of threads. Eigen blocks the depth the same way, so this costs nothing measurable.
    constexpr Eigen::Index kDepthSlice = 240;
    const bool ta = opA == Op::Transpose;
    const bool tb = opB == Op::Transpose;
    const Eigen::Index k = ta ? a.rows() : a.cols();
    if (k <= kDepthSlice) {
        gemmImpl<double, detail::GemmArgs>(dst, alpha, a, opA, b, opB, beta, &detail::DenseKernelTable::gemm);
        return;
    }
    for (Eigen::Index k0 = 0; k0 < k; k0 += kDepthSlice) {
        const Eigen::Index depth = std::min(kDepthSlice, k - k0);
        using Slice = Eigen::Ref<const Eigen::MatrixXd>; // views of the operands, no copies
        const Slice aSlice = ta ? Slice(a.middleRows(k0, depth)) : Slice(a.middleCols(k0, depth));
        const Slice bSlice = tb ? Slice(b.middleCols(k0, depth)) : Slice(b.middleRows(k0, depth));
        gemmImpl<double, detail::GemmArgs>(dst, alpha, aSlice, opA, bSlice, opB, k0 == 0 ? beta : 1.0,
                                           &detail::DenseKernelTable::gemm);
    }
}

void gemm(Eigen::Ref<Eigen::MatrixXf> dst, float alpha, const Eigen::Ref<const Eigen::MatrixXf>& a, Op opA,
          const Eigen::Ref<const Eigen::MatrixXf>& b, Op opB, float beta)
{
    const SerialEigenProducts serial;
    gemmImpl<float, detail::GemmArgsF>(dst, alpha, a, opA, b, opB, beta, &detail::DenseKernelTable::gemmF);
}

void gemmRowMajor(RowMajorMatrixXd& c, double alpha, const RowMajorMatrixXd& a, const RowMajorMatrixXd& b, double beta)
{
    if (a.cols() != b.rows() || c.rows() != a.rows() || c.cols() != b.cols())
        throw Error("internal: GEMM shapes do not match");
    Eigen::Map<Eigen::MatrixXd> ct(c.data(), c.cols(), c.rows());
    const Eigen::Map<const Eigen::MatrixXd> at(a.data(), a.cols(), a.rows());
    const Eigen::Map<const Eigen::MatrixXd> bt(b.data(), b.cols(), b.rows());
    gemm(ct, alpha, bt, Op::None, at, Op::None, beta);
}

void lowerSymvColumns(const double* s, Eigen::Index ld, Eigen::Index size, Eigen::Index c0, Eigen::Index c1, const double* x,
                      double* y)
{
    if (const detail::DenseKernelTable* table = activeTable()) {
        table->symvColumns({s, ld, size, c0, c1, x, y});
        return;
    }
    for (Eigen::Index c = c0; c < c1; ++c) {
        const double* col = s + c * ld;
        const Eigen::Index len = size - c - 1;
        Eigen::Map<const Eigen::VectorXd> tail(col + c + 1, len);
        Eigen::Map<const Eigen::VectorXd> xTail(x + c + 1, len);
        Eigen::Map<Eigen::VectorXd>(y + c + 1, len) += x[c] * tail;
        y[c] += col[c] * x[c] + tail.dot(xTail);
    }
}

const char* denseKernelInstructionSet() { return activeTable() ? "avx2+fma" : "generic"; }

void allowAvx2DenseKernels(bool allow) { g_allowAvx2.store(allow, std::memory_order_relaxed); }

} // namespace mla
