#include "numerics/symmetric_kernels.h"

#include "numerics/dense_kernels.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace mla {
namespace {

// Column blocks of a lower triangle: wide enough for an efficient GEMM, narrow enough that the diagonal blocks (computed
// whole, half of them wasted) cost little and that dynamic scheduling balances the two cores.
constexpr Eigen::Index kBlock = 192;
// Below these sizes a kernel runs on one thread: the fork/join (and, on a loaded machine, waiting for a descheduled
// thread at the barrier) would cost more than the second core saves.
constexpr Eigen::Index kParallelMinimum = 512;
constexpr Eigen::Index kParallelMatVecMinimum = 768;

Eigen::Index blockCount(Eigen::Index n) { return (n + kBlock - 1) / kBlock; }

} // namespace

void syrkLowerAdd(Eigen::MatrixXd& g, const Eigen::MatrixXd& x)
{
    const Eigen::Index n = g.rows();
    const Eigen::Index blocks = blockCount(n);
    // Blocks are ordered tallest first, so dynamic scheduling approximates longest-job-first.
#pragma omp parallel for schedule(dynamic, 1) if (n >= kParallelMinimum)
    for (Eigen::Index b = 0; b < blocks; ++b) {
        const Eigen::Index c0 = b * kBlock;
        const Eigen::Index w = std::min(kBlock, n - c0);
        gemm(g.block(c0, c0, n - c0, w), 1.0, x.rightCols(n - c0), Op::Transpose, x.middleCols(c0, w), Op::None, 1.0);
    }
}

void gemmtLowerSub(StridedBlock a, const Eigen::MatrixXd& p, const Eigen::MatrixXd& q)
{
    const Eigen::Index s = a.rows();
    const Eigen::Index blocks = blockCount(s);
#pragma omp parallel for schedule(dynamic, 1) if (s >= kParallelMinimum)
    for (Eigen::Index b = 0; b < blocks; ++b) {
        const Eigen::Index c0 = b * kBlock;
        const Eigen::Index w = std::min(kBlock, s - c0);
        gemm(a.block(c0, c0, s - c0, w), -1.0, p.bottomRows(s - c0), Op::None, q.middleRows(c0, w), Op::Transpose, 1.0);
    }
}

void SymmetricMatVec::apply(const double* s, Eigen::Index ld, Eigen::Index size, const double* x, double* y)
{
    if (size < kParallelMatVecMinimum) {
        std::fill(y, y + size, 0.0);
        lowerSymvColumns(s, ld, size, 0, size, x, y);
        return;
    }
    const int threads = omp_get_max_threads();
    int mode = 0;
    if (threads >= 2 && !omp_in_parallel()) {
        // Sample each mode twice, then use the faster, trying the other again every 16th call.
        if (m_samples[0] < 2 || m_samples[1] < 2)
            mode = m_samples[1] < m_samples[0] ? 1 : 0;
        else
            mode = m_secondsPerEntry[1] < m_secondsPerEntry[0] ? 1 : 0;
        if (++m_calls % 16 == 0)
            mode = 1 - mode;
    }
    const auto start = std::chrono::steady_clock::now();
    applyParts(s, ld, size, x, y, mode == 1 ? threads : 1);
    if (threads < 2 || omp_in_parallel())
        return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double perEntry = seconds / (0.5 * static_cast<double>(size) * static_cast<double>(size));
    m_secondsPerEntry[mode] = m_samples[mode] == 0 ? perEntry : 0.7 * m_secondsPerEntry[mode] + 0.3 * perEntry;
    ++m_samples[mode];
}

void SymmetricMatVec::applyParts(const double* s, Eigen::Index ld, Eigen::Index size, const double* x, double* y, int threads)
{
    if (m_partial.rows() < size || m_partial.cols() < kParts)
        m_partial.resize(std::max(m_partial.rows(), size), kParts);
    // Column ranges of equal triangle area: columns [0, c) hold about size^2 (1 - (1 - c/size)^2) / 2 entries.
    Eigen::Index bounds[kParts + 1];
    for (int u = 0; u <= kParts; ++u)
        bounds[u] = u >= kParts ? size
            : static_cast<Eigen::Index>(std::floor(static_cast<double>(size) * (1.0 - std::sqrt(1.0 - static_cast<double>(u) / kParts))));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
#pragma omp for schedule(dynamic, 1)
        for (int u = 0; u < kParts; ++u) {
            double* partial = m_partial.col(u).data();
            std::fill(partial + bounds[u], partial + size, 0.0);
            lowerSymvColumns(s, ld, size, bounds[u], bounds[u + 1], x, partial);
        }
        // Part u only wrote rows >= bounds[u]; the parts are added in their order whichever thread made them.
#pragma omp for schedule(static)
        for (Eigen::Index i = 0; i < size; ++i) {
            double sum = 0.0;
            for (int u = 0; u < kParts; ++u)
                if (i >= bounds[u])
                    sum += m_partial(i, u);
            y[i] = sum;
        }
    }
}

} // namespace mla
