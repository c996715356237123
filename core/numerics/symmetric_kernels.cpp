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
    const int threads = omp_get_max_threads();
    if (size < kParallelMatVecMinimum || threads < 2 || omp_in_parallel()) {
        std::fill(y, y + size, 0.0);
        lowerSymvColumns(s, ld, size, 0, size, x, y);
        return;
    }
    // Sample each mode twice, then use the faster, trying the other again every 16th call.
    int mode = 0;
    if (m_samples[0] < 2 || m_samples[1] < 2)
        mode = m_samples[1] < m_samples[0] ? 1 : 0;
    else
        mode = m_secondsPerEntry[1] < m_secondsPerEntry[0] ? 1 : 0;
    if (++m_calls % 16 == 0)
        mode = 1 - mode;
    const auto start = std::chrono::steady_clock::now();
    if (mode == 0) {
        std::fill(y, y + size, 0.0);
        lowerSymvColumns(s, ld, size, 0, size, x, y);
    } else {
        applyParallel(s, ld, size, x, y, threads);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double perEntry = seconds / (0.5 * static_cast<double>(size) * static_cast<double>(size));
    m_secondsPerEntry[mode] = m_samples[mode] == 0 ? perEntry : 0.7 * m_secondsPerEntry[mode] + 0.3 * perEntry;
    ++m_samples[mode];
}

void SymmetricMatVec::applyParallel(const double* s, Eigen::Index ld, Eigen::Index size, const double* x, double* y, int threads)
{
    if (m_partial.rows() < size || m_partial.cols() < threads)
        m_partial.resize(std::max(m_partial.rows(), size), std::max<Eigen::Index>(m_partial.cols(), threads));
#pragma omp parallel num_threads(threads)
    {
        const int count = omp_get_num_threads();
        const int t = omp_get_thread_num();
        // Column ranges of equal triangle area: columns [0, c) hold about size^2 (1 - (1 - c/size)^2) / 2 entries.
        std::vector<Eigen::Index> bounds(static_cast<std::size_t>(count) + 1);
        for (int u = 0; u <= count; ++u)
            bounds[static_cast<std::size_t>(u)] = u >= count ? size
                : static_cast<Eigen::Index>(std::floor(static_cast<double>(size) * (1.0 - std::sqrt(1.0 - static_cast<double>(u) / count))));
        const Eigen::Index c0 = bounds[static_cast<std::size_t>(t)];
        double* partial = m_partial.col(t).data();
        std::fill(partial + c0, partial + size, 0.0);
        lowerSymvColumns(s, ld, size, c0, bounds[static_cast<std::size_t>(t) + 1], x, partial);
#pragma omp barrier
        // Sum the partial vectors; thread u only wrote rows >= bounds[u].
#pragma omp for schedule(static)
        for (Eigen::Index i = 0; i < size; ++i) {
            double sum = 0.0;
            for (int u = 0; u < count; ++u)
                if (i >= bounds[static_cast<std::size_t>(u)])
                    sum += m_partial(i, u);
            y[i] = sum;
        }
    }
}

} // namespace mla
