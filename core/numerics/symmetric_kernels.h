#pragma once

#include <Eigen/Core>

// Kernels on symmetric matrices stored in their lower triangle (column-major double), split over the cores by hand:
// Eigen parallelises a plain GEMM but neither its triangular products (rank updates) nor any matrix-vector product,
// and those two carry the Gram matrix and the tridiagonal reduction.
namespace mla {

using StridedBlock = Eigen::Map<Eigen::MatrixXd, 0, Eigen::OuterStride<>>;

// Lower triangle of g += x^T x (g: n x n, x: t x n).
void syrkLowerAdd(Eigen::MatrixXd& g, const Eigen::MatrixXd& x);

// Lower triangle of a -= p q^T (a: s x s, p and q: s x r). With p = [V W] and q = [W V] this is the symmetric
// rank-2r update a -= V W^T + W V^T of blocked Householder reductions.
void gemmtLowerSub(StridedBlock a, const Eigen::MatrixXd& p, const Eigen::MatrixXd& q);

// y = S x for the symmetric S whose lower triangle is stored at `s` (s x s, column stride ld). Reads the triangle once.
// Above a size the triangle is cut into a fixed number of column ranges, each accumulated into its own partial vector
// and the partials added in range order, so the result does not depend on how many threads ran it. The tridiagonal
// reduction calls this once per column, so with two threads it synchronises thousands of times: on a machine whose
// cores are busy with other work a barrier can wait a whole scheduler time slice, and two threads then run several
// times slower than one. So the object measures both and keeps using the faster (re-checking the other every few
// calls); both give the same bits, so the choice, which depends on timing, changes only the speed.
class SymmetricMatVec {
public:
    void apply(const double* s, Eigen::Index ld, Eigen::Index size, const double* x, double* y);

private:
    static constexpr int kParts = 8;
    void applyParts(const double* s, Eigen::Index ld, Eigen::Index size, const double* x, double* y, int threads);

    Eigen::MatrixXd m_partial; // one column per range
    double m_secondsPerEntry[2] = {0.0, 0.0}; // moving averages: [0] one thread, [1] all threads
    int m_samples[2] = {0, 0};
    long m_calls = 0;
};

} // namespace mla
