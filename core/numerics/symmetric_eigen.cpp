#include "numerics/symmetric_eigen.h"

#include "numerics/dense_kernels.h"
#include "numerics/random_fill.h"
#include "numerics/symmetric_kernels.h"
#include "util/error.h"

#include <Eigen/Eigenvalues>
#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mla {
namespace {

using Eigen::Index;

// Columns reduced per panel with matrix-vector products before one rank-2*kPanel GEMM update of the trailing matrix.
// Wider panels move more work into the GEMM but add O(n^2 kPanel) panel corrections; 32..64 is LAPACK's range.
constexpr Index kPanel = 48;
// Reflectors applied together in the back-transformation: the two GEMMs per block have this inner dimension.
constexpr Index kBackBlock = 128;
// Eigenvalues closer than this (relative to ||T||) are one cluster for inverse iteration. LAPACK's dstein uses 1e-3,
// which makes almost every vector of a smoothly decaying spectrum one cluster (O(n k^2) orthogonalisation); the
// vectors here end in float factors, so orthogonality to ~1e-8 is plenty.
constexpr double kClusterTolerance = 1e-8;
constexpr int kMaxInverseIterations = 5;
constexpr int kExtraInverseIterations = 2;
// Clusters of at least this many vectors whose eigenvalues all lie within kTightCluster ||T|| (e.g. the zero eigenvalues
// of a rank-deficient Gram matrix) are computed as one block; each solve + QR shrinks the components outside the
// cluster by width / gap <= 1e-3, so at most kBlockIterations reach 1e-9.
constexpr Index kBlockClusterMinimum = 32;
constexpr double kTightCluster = 1e-11;
constexpr int kBlockIterations = 3;

// H = I - tau v v^T with v = [1; x_out] and H [alpha; x] = [beta; 0] (LAPACK dlarfg). x is overwritten with v's tail.
template <typename Tail>
void makeReflector(double alpha, Tail&& x, double& tau, double& beta)
{
    const double xnorm = x.norm();
    if (xnorm == 0.0) {
        tau = 0.0;
        beta = alpha;
        return;
    }
    beta = -std::copysign(std::hypot(alpha, xnorm), alpha);
    tau = (beta - alpha) / beta;
    x *= 1.0 / (alpha - beta);
}

} // namespace

TridiagonalReduction::TridiagonalReduction(Eigen::MatrixXd a, const JobControl& job)
    : m_reflectors(std::move(a))
{
    Eigen::MatrixXd& A = m_reflectors;
    if (A.rows() != A.cols())
        throw Error("internal: tridiagonal reduction of a non-square matrix");
    const Index n = A.rows();
    m_diagonal.resize(n);
    m_subdiagonal.resize(std::max<Index>(n - 1, 0));
    m_tau.resize(std::max<Index>(n - 1, 0));
    if (n == 0)
        return;

    SymmetricMatVec symv;
    Eigen::MatrixXd V, W, vw, wv;
    Eigen::VectorXd y(n), t1, t2;
    const double totalWork = static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
    for (Index j0 = 0; j0 < n - 1; j0 += kPanel) {
        const double done = static_cast<double>(n - j0);
        job.progress(1.0 - done * done * done / totalWork, "tridiagonal reduction");
        const Index pb = std::min(kPanel, n - 1 - j0); // reflectors in this panel
        const Index m = n - j0;                        // rows j0..n-1
        V.setZero(m, pb);
        W.setZero(m, pb);
        for (Index c = 0; c < pb; ++c) {
            const Index j = j0 + c;
            // Bring column j up to date with this panel's earlier reflectors (the trailing matrix is updated lazily).
            auto col = A.col(j).segment(j, n - j);
            if (c > 0) {
                col.noalias() -= V.block(c, 0, m - c, c) * W.row(c).head(c).transpose();
                col.noalias() -= W.block(c, 0, m - c, c) * V.row(c).head(c).transpose();
            }
            m_diagonal(j) = A(j, j);
            const Index len = n - j - 1; // length of the vector below the diagonal
            double tau = 0.0, beta = 0.0;
            makeReflector(A(j + 1, j), A.col(j).segment(j + 2, len - 1), tau, beta);
            m_subdiagonal(j) = beta;
            m_tau(j) = tau;
            auto v = V.col(c).segment(c + 1, len);
            v(0) = 1.0;
            v.tail(len - 1) = A.col(j).segment(j + 2, len - 1);
            if (tau == 0.0)
                continue; // H_j = I: its w column stays zero
            // w = tau (A22 v - V W^T v - W V^T v), then w -= (tau/2)(w.v) v  (LAPACK dlatrd).
            auto w = y.head(len);
            symv.apply(&A(j + 1, j + 1), A.outerStride(), len, v.data(), w.data());
            if (c > 0) {
                t1.noalias() = W.block(c + 1, 0, len, c).transpose() * v;
                t2.noalias() = V.block(c + 1, 0, len, c).transpose() * v;
                w.noalias() -= V.block(c + 1, 0, len, c) * t1;
                w.noalias() -= W.block(c + 1, 0, len, c) * t2;
            }
            w *= tau;
            w += (-0.5 * tau * w.dot(v)) * v;
            W.col(c).segment(c + 1, len) = w;
        }
        const Index mt = m - pb;
        if (mt > 0) {
            vw.resize(mt, 2 * pb);
            wv.resize(mt, 2 * pb);
            vw << V.bottomRows(mt), W.bottomRows(mt);
            wv << W.bottomRows(mt), V.bottomRows(mt);
            gemmtLowerSub(StridedBlock(&A(j0 + pb, j0 + pb), mt, mt, Eigen::OuterStride<>(A.outerStride())), vw, wv);
        }
    }
    m_diagonal(n - 1) = A(n - 1, n - 1);
    job.progress(1.0, "tridiagonal reduction");
}

void TridiagonalReduction::applyQ(Eigen::MatrixXd& z, const JobControl& job) const
{
    const Index n = size();
    if (z.rows() != n)
        throw Error("internal: back-transformation with the wrong number of rows");
    const Index reflectors = n - 1;
    if (reflectors <= 0 || z.cols() == 0)
        return;
    const Index blocks = (reflectors + kBackBlock - 1) / kBackBlock;
    Eigen::MatrixXd V, S, T, WZ;
    Eigen::VectorXd t;
    // Q z = H_0 (H_1 (... H_{n-2} z)): the last block first. A block H_js ... H_je-1 = I - V T V^T (LAPACK dlarft,
    // forward, column-wise) with T upper triangular.
    for (Index b = blocks - 1; b >= 0; --b) {
        job.progress(static_cast<double>(blocks - 1 - b) / static_cast<double>(blocks), "back-transformation");
        const Index js = b * kBackBlock;
        const Index nr = std::min(kBackBlock, reflectors - js);
        const Index mb = n - js - 1; // rows js+1 .. n-1
        V.setZero(mb, nr);
        for (Index c = 0; c < nr; ++c) {
            V(c, c) = 1.0;
            V.col(c).tail(mb - c - 1) = m_reflectors.col(js + c).tail(mb - c - 1);
        }
        S.resize(nr, nr);
        gemm(S, 1.0, V, Op::Transpose, V, Op::None, 0.0);
        T.setZero(nr, nr);
        for (Index c = 0; c < nr; ++c) {
            const double tau = m_tau(js + c);
            T(c, c) = tau;
            if (c > 0 && tau != 0.0) {
                t.noalias() = T.topLeftCorner(c, c).triangularView<Eigen::Upper>() * S.col(c).head(c);
                T.col(c).head(c) = -tau * t;
            }
        }
        auto zs = z.bottomRows(mb);
        WZ.resize(nr, z.cols());
        gemm(WZ, 1.0, V, Op::Transpose, zs, Op::None, 0.0);
        WZ = T.triangularView<Eigen::Upper>() * WZ;
        gemm(zs, -1.0, V, Op::None, WZ, Op::None, 1.0);
    }
    job.progress(1.0, "back-transformation");
}

Eigen::VectorXd tridiagonalEigenvalues(const Eigen::VectorXd& diagonal, const Eigen::VectorXd& subdiagonal)
{
    const Index n = diagonal.size();
    if (n == 0)
        return {};
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver;
    solver.computeFromTridiagonal(diagonal, subdiagonal, Eigen::EigenvaluesOnly);
    if (solver.info() != Eigen::Success)
        throw Error("the symmetric eigenvalue iteration did not converge");
    return solver.eigenvalues().reverse(); // Eigen sorts ascending
}

namespace {

// LU factorisation with partial pivoting of T - sigma I for a tridiagonal T (LAPACK dlagtf), and the solve with tiny
// pivots replaced by +-tol (dlagts, job -1): exactly what inverse iteration needs, since T - lambda I is singular to
// working precision by design.
class ShiftedTridiagonalLU {
public:
    void factor(const Eigen::VectorXd& d, const Eigen::VectorXd& e, double sigma)
    {
        const Index n = d.size();
        m_a = d.array() - sigma;
        m_b = e;
        m_c = e;
        m_d.setZero(std::max<Index>(n - 2, 0));
        m_swapped.assign(static_cast<std::size_t>(std::max<Index>(n - 1, 0)), 0);
        for (Index k = 0; k + 1 < n; ++k) {
            if (std::abs(m_a(k)) >= std::abs(m_c(k))) {
                const double mult = m_a(k) != 0.0 ? m_c(k) / m_a(k) : 0.0;
                m_c(k) = mult;
                m_a(k + 1) -= mult * m_b(k);
            } else {
                m_swapped[static_cast<std::size_t>(k)] = 1;
                const double mult = m_a(k) / m_c(k);
                m_a(k) = m_c(k);
                const double temp = m_a(k + 1);
                m_a(k + 1) = m_b(k) - mult * temp;
                if (k + 2 < n) {
                    m_d(k) = m_b(k + 1);
                    m_b(k + 1) = -mult * m_d(k);
                }
                m_b(k) = temp;
                m_c(k) = mult;
            }
        }
    }

    double lastPivot() const { return m_a.size() > 0 ? m_a(m_a.size() - 1) : 0.0; }

    void solve(Eigen::Ref<Eigen::VectorXd> x, double tol) const
    {
        const Index n = m_a.size();
        for (Index k = 0; k + 1 < n; ++k) {
            if (m_swapped[static_cast<std::size_t>(k)])
                std::swap(x(k), x(k + 1));
            x(k + 1) -= m_c(k) * x(k);
        }
        constexpr double kHuge = 1e250;
        for (Index k = n - 1; k >= 0; --k) {
            double temp = x(k);
            if (k + 1 < n)
                temp -= m_b(k) * x(k + 1);
            if (k + 2 < n)
                temp -= m_d(k) * x(k + 2);
            double pivot = m_a(k);
            if (std::abs(pivot) < tol)
                pivot = pivot >= 0.0 ? tol : -tol;
            x(k) = temp / pivot;
            // The solve is linear, so rescaling everything keeps the direction; only overflow is avoided.
            if (std::abs(x(k)) > kHuge)
                x *= 1.0 / std::abs(x(k));
        }
    }

private:
    Eigen::VectorXd m_a, m_b, m_c, m_d; // U's diagonal, first and second superdiagonal; L's multipliers in m_c
    std::vector<char> m_swapped;
};

} // namespace

namespace {

// Inverse iteration for the eigenvectors of one cluster of eigenvalues (columns [c0, c1) of z).
class ClusterVectors {
public:
    ClusterVectors(const Eigen::VectorXd& d, const Eigen::VectorXd& e, const Eigen::VectorXd& eigenvalues, double tnorm,
                   std::uint64_t seed)
        : m_d(d), m_e(e), m_values(eigenvalues), m_tnorm(tnorm), m_pivotTol(kEps * tnorm), m_seed(seed)
    {
    }

    // One vector at a time (LAPACK dstein): each with its own shift, orthogonalised against the cluster's earlier
    // vectors after every solve.
    void sequential(Index c0, Index c1, Eigen::MatrixXd& z) const
    {
        const Index n = m_d.size();
        // dstein's convergence test: the solution of the scaled system has grown past sqrt(0.1 / n).
        const double grown = std::sqrt(0.1 / static_cast<double>(n));
        ShiftedTridiagonalLU lu;
        Eigen::VectorXd x(n), coeffs;
        double previousShift = 0.0;
        for (Index j = c0; j < c1; ++j) {
            double shift = m_values(j);
            // Equal shifts inside a cluster would give the same vector; separate them by a few ulps of ||T||.
            if (j > c0 && shift >= previousShift - 10.0 * m_pivotTol)
                shift = previousShift - 10.0 * m_pivotTol;
            previousShift = shift;
            lu.factor(m_d, m_e, shift);
            fillUniform(x, m_seed, static_cast<std::uint64_t>(j));
            int converged = 0;
            for (int it = 0; it < kMaxInverseIterations; ++it) {
                // Scale the right-hand side to ||x||_1 = n ||T|| max(eps, |u_nn|) as dstein does.
                x *= static_cast<double>(n) * m_tnorm * std::max(kEps, std::abs(lu.lastPivot())) / x.lpNorm<1>();
                lu.solve(x, m_pivotTol);
                if (j > c0) {
                    // Classical Gram-Schmidt twice against the cluster's earlier vectors.
                    auto previous = z.middleCols(c0, j - c0);
                    for (int pass = 0; pass < 2; ++pass) {
                        coeffs.noalias() = previous.transpose() * x;
                        x.noalias() -= previous * coeffs;
                    }
                }
                const double grownTo = x.lpNorm<Eigen::Infinity>();
                if (!(grownTo > 0.0) || !std::isfinite(grownTo)) {
                    // Lost everything to the orthogonalisation or overflowed: restart from another vector.
                    fillUniform(x, m_seed ^ 0x9e3779b97f4a7c15ull, static_cast<std::uint64_t>(j * kMaxInverseIterations + it));
                    continue;
                }
                if (grownTo >= grown && ++converged > kExtraInverseIterations)
                    break;
            }
            Eigen::Index maxAt = 0;
            x.cwiseAbs().maxCoeff(&maxAt);
            // Sign convention of dstein: the largest component is positive.
            z.col(j) = x * ((x(maxAt) < 0.0 ? -1.0 : 1.0) / x.norm());
        }
    }

    // All vectors of a tight cluster at once: block inverse iteration with one shift at the cluster's centre and a
    // Householder QR after every solve. The sequential scheme costs O(n c^2) vector operations per iteration, e.g.
    // minutes for the thousands of (numerically) zero eigenvalues of a rank-deficient Gram matrix when the factors of
    // full rank are asked for; here the same costs one QR per iteration. Only valid when the cluster is much narrower
    // than its distance to the other eigenvalues, so that the c eigenvalues nearest the shift are the cluster's.
    void block(Index c0, Index c1, Eigen::MatrixXd& z) const
    {
        const Index n = m_d.size();
        const Index c = c1 - c0;
        const Index k = m_values.size();
        // Each solve shrinks the components outside the cluster by width / gap (gap: to the nearest wanted eigenvalue
        // outside it; mixing with unwanted ones below is harmless), so iterate until (width / gap)^i <= 1e-12.
        const double width = std::max(m_values(c0) - m_values(c1 - 1), kEps * m_tnorm);
        double gap = std::numeric_limits<double>::infinity();
        if (c0 > 0)
            gap = m_values(c0 - 1) - m_values(c0);
        if (c1 < k)
            gap = std::min(gap, m_values(c1 - 1) - m_values(c1));
        const double ratio = width / gap;
        const int iterations = ratio <= 0.0 ? 1 : std::clamp(static_cast<int>(std::ceil(-12.0 / std::log10(ratio))), 1, kBlockIterations);
        ShiftedTridiagonalLU lu;
        lu.factor(m_d, m_e, 0.5 * (m_values(c0) + m_values(c1 - 1)));
        Eigen::MatrixXd x(n, c);
        for (Index j = 0; j < c; ++j) {
            auto col = x.col(j);
            fillUniform(col, m_seed, static_cast<std::uint64_t>(c0 + j));
        }
        for (int it = 0; it < iterations; ++it) {
            for (Index j = 0; j < c; ++j) {
                x.col(j) /= x.col(j).lpNorm<Eigen::Infinity>();
                lu.solve(x.col(j), m_pivotTol);
            }
            Eigen::HouseholderQR<Eigen::Ref<Eigen::MatrixXd>> qr(x);
            Eigen::MatrixXd q = Eigen::MatrixXd::Identity(n, c);
            qr.householderQ().applyThisOnTheLeft(q);
            x = std::move(q);
        }
        z.middleCols(c0, c) = x;
    }

private:
    static constexpr double kEps = std::numeric_limits<double>::epsilon();

    const Eigen::VectorXd& m_d;
    const Eigen::VectorXd& m_e;
    const Eigen::VectorXd& m_values;
    double m_tnorm;
    double m_pivotTol;
    std::uint64_t m_seed;
};

} // namespace

Eigen::MatrixXd tridiagonalEigenvectors(const Eigen::VectorXd& diagonal, const Eigen::VectorXd& subdiagonal,
                                        const Eigen::VectorXd& eigenvalues, std::uint64_t seed, const JobControl& job)
{
    const Index n = diagonal.size();
    const Index k = eigenvalues.size();
    Eigen::MatrixXd z = Eigen::MatrixXd::Zero(n, k);
    if (n == 0 || k == 0)
        return z;
    if (k > n)
        throw Error("internal: more eigenvectors asked for than the matrix has");
    double tnorm = 0.0; // ||T||_1 (= ||T||_inf)
    for (Index i = 0; i < n; ++i) {
        const double left = i > 0 ? std::abs(subdiagonal(i - 1)) : 0.0;
        const double right = i + 1 < n ? std::abs(subdiagonal(i)) : 0.0;
        tnorm = std::max(tnorm, std::abs(diagonal(i)) + left + right);
    }
    if (tnorm == 0.0) {
        z.topRows(k).setIdentity();
        return z;
    }

    // Clusters: runs of eigenvalues whose consecutive gaps are below clusterGap. Different clusters are independent.
    const double clusterGap = kClusterTolerance * tnorm;
    std::vector<Index> clusterStart{0};
    for (Index j = 1; j < k; ++j)
        if (eigenvalues(j - 1) - eigenvalues(j) > clusterGap)
            clusterStart.push_back(j);
    clusterStart.push_back(k);
    const Index clusters = static_cast<Index>(clusterStart.size()) - 1;
    const ClusterVectors solver(diagonal, subdiagonal, eigenvalues, tnorm, seed);

    // Batches between progress reports (cancellation cannot leave an OpenMP loop).
    const Index batch = std::max<Index>(1, clusters / 16);
    for (Index first = 0; first < clusters; first += batch) {
        job.progress(static_cast<double>(first) / static_cast<double>(clusters), "eigenvectors");
        const Index last = std::min(clusters, first + batch);
#pragma omp parallel for schedule(dynamic, 1) if (n >= 256 && last - first > 1)
        for (Index cl = first; cl < last; ++cl) {
            const Index c0 = clusterStart[static_cast<std::size_t>(cl)];
            const Index c1 = clusterStart[static_cast<std::size_t>(cl) + 1];
            // Tight: narrower than kTightCluster ||T||, while its neighbours are at least clusterGap away (1000 times more).
            const bool tight = eigenvalues(c0) - eigenvalues(c1 - 1) <= kTightCluster * tnorm;
            if (c1 - c0 >= kBlockClusterMinimum && tight)
                solver.block(c0, c1, z);
            else
                solver.sequential(c0, c1, z);
        }
    }
    job.progress(1.0, "eigenvectors");
    return z;
}

namespace {

// Divides a by its largest absolute entry (lower triangle), so the reduction works on entries of size <= 1.
double scaleToUnit(Eigen::MatrixXd& a)
{
    if (a.rows() != a.cols())
        throw Error("internal: eigen-decomposition of a non-square matrix");
    double scale = 0.0;
    for (Index c = 0; c < a.cols(); ++c)
        scale = std::max(scale, a.col(c).tail(a.rows() - c).cwiseAbs().maxCoeff());
    if (!std::isfinite(scale))
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    if (scale > 0.0)
        a *= 1.0 / scale;
    return scale;
}

} // namespace

SymmetricEigenSolver::SymmetricEigenSolver(Eigen::MatrixXd a, const JobControl& job)
    : m_scale(scaleToUnit(a))
    , m_reduction(std::move(a), job.slice(0.0, 0.97))
{
    m_values = m_scale > 0.0 ? Eigen::VectorXd(tridiagonalEigenvalues(m_reduction.diagonal(), m_reduction.subdiagonal()) * m_scale)
                             : Eigen::VectorXd::Zero(m_reduction.size());
    job.progress(1.0, "eigenvalues");
}

Eigen::MatrixXd SymmetricEigenSolver::topVectors(Eigen::Index k, const JobControl& job) const
{
    const Index n = size();
    k = std::clamp<Index>(k, 0, n);
    if (m_scale == 0.0)
        return Eigen::MatrixXd::Identity(n, k);
    Eigen::MatrixXd z = tridiagonalEigenvectors(m_reduction.diagonal(), m_reduction.subdiagonal(), m_values.head(k) / m_scale, 1,
                                                job.slice(0.0, 0.2));
    m_reduction.applyQ(z, job.slice(0.2, 1.0));
    return z;
}

SymmetricEigen symmetricEigen(Eigen::MatrixXd a, Eigen::Index k, const JobControl& job)
{
    const double reduceShare = 0.75;
    SymmetricEigenSolver solver(std::move(a), job.slice(0.0, reduceShare));
    SymmetricEigen result;
    result.vectors = solver.topVectors(k, job.slice(reduceShare, 1.0));
    result.values = solver.values();
    return result;
}

Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job)
{
    return SymmetricEigenSolver(std::move(a), job).values();
}

} // namespace mla
