#include "numerics/decompositions.h"

#include "numerics/dense_kernels.h"
#include "numerics/randomized_svd.h"
#include "util/error.h"

#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace mla {
namespace {

using Eigen::Index;

// Rows of U_k^T M below this fraction of the largest are orthogonalised explicitly in the M M^T path: normalising
// u_i^T M alone leaves them orthogonal only to about eps s_1^2 / (s_i s_j), and with this threshold that is <= ~1e-8.
constexpr double kWeakRow = 1e-4;
constexpr Index kWidenChunk = 1024;

// Neumaier's compensated sum of the given terms, added in the order given.
class CompensatedSum {
public:
    void add(double x)
    {
        const double t = m_sum + x;
        m_compensation += std::abs(m_sum) >= std::abs(x) ? (m_sum - t) + x : (x - t) + m_sum;
        m_sum = t;
    }
    double value() const { return m_sum + m_compensation; }

private:
    double m_sum = 0.0;
    double m_compensation = 0.0;
};

std::vector<double> singularFromEigenvalues(const Eigen::VectorXd& values)
{
    std::vector<double> s(static_cast<std::size_t>(values.size()));
    for (Index i = 0; i < values.size(); ++i)
        s[static_cast<std::size_t>(i)] = std::sqrt(std::max(values(i), 0.0));
    return s;
}

// Factors from U_k (eigenvectors of M M^T): down rows = normalised rows of B = U_k^T M, up = U_k scaled by the row
// norms, so up down = U_k U_k^T M. Weak rows are orthogonalised against the others (their share moves into up), zero
// rows stay zero. Returns ||B||_F^2 = ||U_k^T M||_F^2.
double leftFactors(const MatrixRM& m, const Eigen::MatrixXd& u, MatrixRMd& up, MatrixRMd& down)
{
    const Index kk = u.cols();
    Eigen::MatrixXd b(kk, m.cols()); // B = U^T M in double: the normalisation below amplifies float errors of weak rows
    Eigen::MatrixXd widened;
    for (Index c0 = 0; c0 < m.cols(); c0 += kWidenChunk) {
        const Index cc = std::min(kWidenChunk, m.cols() - c0);
        widened = m.middleCols(c0, cc).cast<double>();
        gemm(b.middleCols(c0, cc), 1.0, u, Op::Transpose, widened, Op::None, 0.0);
    }
    const Eigen::VectorXd norms = b.rowwise().norm();
    const double largest = kk > 0 ? norms.maxCoeff() : 0.0;
    up = MatrixRMd::Zero(m.rows(), kk);
    down = MatrixRMd::Zero(kk, m.cols());
    std::vector<Index> strong, weak;
    for (Index i = 0; i < kk; ++i) {
        if (norms(i) >= kWeakRow * largest && norms(i) > 0.0) {
            strong.push_back(i);
            down.row(i) = b.row(i) / norms(i);
            up.col(i) = u.col(i) * norms(i);
        } else if (norms(i) > 0.0) {
            weak.push_back(i);
        }
    }
    if (!weak.empty()) {
        const Index r = static_cast<Index>(weak.size());
        const Index s = static_cast<Index>(strong.size());
        Eigen::MatrixXd bw(r, m.cols()), uw(m.rows(), r), ds(s, m.cols());
        for (Index i = 0; i < r; ++i) {
            bw.row(i) = b.row(weak[static_cast<std::size_t>(i)]);
            uw.col(i) = u.col(weak[static_cast<std::size_t>(i)]);
        }
        for (Index i = 0; i < s; ++i)
            ds.row(i) = down.row(strong[static_cast<std::size_t>(i)]);
        // B_w = C D_s + R^T Q^T: project out the strong directions (twice, classical Gram-Schmidt), then QR the rest.
        Eigen::MatrixXd c = Eigen::MatrixXd::Zero(r, s);
        for (int pass = 0; pass < 2 && s > 0; ++pass) {
            const Eigen::MatrixXd step = bw * ds.transpose();
            bw.noalias() -= step * ds;
            c += step;
        }
        Eigen::HouseholderQR<Eigen::MatrixXd> qr(bw.transpose());
        Eigen::MatrixXd q = Eigen::MatrixXd::Identity(m.cols(), r);
        qr.householderQ().applyThisOnTheLeft(q);
        const Eigen::MatrixXd rt = qr.matrixQR().topRows(r).triangularView<Eigen::Upper>().toDenseMatrix().transpose();
        const Eigen::MatrixXd upStrongExtra = uw * c; // U_w C moves into the strong columns
        const Eigen::MatrixXd upWeak = uw * rt;
        for (Index i = 0; i < s; ++i)
            up.col(strong[static_cast<std::size_t>(i)]) += upStrongExtra.col(i);
        for (Index i = 0; i < r; ++i) {
            const Index at = weak[static_cast<std::size_t>(i)];
            up.col(at) = upWeak.col(i);
            down.row(at) = q.col(i).transpose();
        }
    }
    return norms.squaredNorm();
}

} // namespace

// Zero columns of up / rows of down (and zero singular values) up to rank k.
void padTo(LowRankFactors& f, Eigen::Index rows, Eigen::Index cols, Eigen::Index k)
{
    const Index have = f.up.cols();
    if (have >= k)
        return;
    MatrixRM up = MatrixRM::Zero(rows, k);
    MatrixRM down = MatrixRM::Zero(k, cols);
    up.leftCols(have) = f.up;
    down.topRows(have) = f.down;
    f.up = std::move(up);
    f.down = std::move(down);
    f.singular.resize(static_cast<std::size_t>(k), 0.0);
}

LowRankFactors trivialFactors(const MatrixRM& m, Eigen::Index k)
{
    LowRankFactors f;
    f.up = MatrixRM::Zero(m.rows(), k);
    f.down = MatrixRM::Zero(k, m.cols());
    f.singular.assign(static_cast<std::size_t>(k), 0.0);
    f.residual = std::sqrt(squaredFrobeniusNorm(m));
    f.optimalResidual = f.residual;
    return f;
}

std::vector<double> singularValues(const MatrixRM& m, const JobControl& job)
{
    if (std::min(m.rows(), m.cols()) == 0)
        return {};
    Eigen::MatrixXd g = gramMatrix(m, smallerGramSide(m.rows(), m.cols()), job.slice(0.0, 0.4));
    return singularFromEigenvalues(symmetricEigenvalues(std::move(g), job.slice(0.4, 1.0)));
}

std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job)
{
    if (std::min(m.rows(), m.cols()) == 0)
        return {};
    Eigen::MatrixXd g = gramMatrix(m, smallerGramSide(m.rows(), m.cols()), job.slice(0.0, 0.4));
    return singularFromEigenvalues(symmetricEigenvalues(std::move(g), job.slice(0.4, 1.0)));
}

std::vector<double> relativeErrorCurve(const std::vector<double>& s)
{
    const std::size_t n = s.size();
    std::vector<double> tail(n + 1, 0.0); // tail[k] = sum_{i >= k} s_i^2, summed from the smallest value up
    CompensatedSum sum;
    for (std::size_t i = n; i-- > 0;) {
        sum.add(s[i] * s[i]);
        tail[i] = sum.value();
    }
    const double total = tail[0];
    std::vector<double> err(n + 1, 0.0);
    if (total > 0.0)
        for (std::size_t k = 0; k < n; ++k)
            err[k] = std::sqrt(std::clamp(tail[k] / total, 0.0, 1.0));
    if (total > 0.0)
        err[0] = 1.0;
    return err;
}

SpectralDecomposition::SpectralDecomposition(const MatrixRM& m, const JobControl& job)
    : SpectralDecomposition(gramMatrix(m, smallerGramSide(m.rows(), m.cols()), job.slice(0.0, 0.4)),
                            smallerGramSide(m.rows(), m.cols()), m.rows(), m.cols(), job.slice(0.4, 1.0))
{
}

SpectralDecomposition::SpectralDecomposition(const MatrixXdRM& m, const JobControl& job)
    : SpectralDecomposition(gramMatrix(m, smallerGramSide(m.rows(), m.cols()), job.slice(0.0, 0.4)),
                            smallerGramSide(m.rows(), m.cols()), m.rows(), m.cols(), job.slice(0.4, 1.0))
{
}

SpectralDecomposition::SpectralDecomposition(Eigen::MatrixXd gram, GramSide side, std::int64_t rows, std::int64_t cols,
                                             const JobControl& job)
    : m_side(side)
    , m_rows(rows)
    , m_cols(cols)
    , m_squaredNorm(gram.trace()) // the Gram's trace is ||M||_F^2, already summed in double
    , m_solver(std::move(gram), job)
    , m_singular(singularFromEigenvalues(m_solver.values()))
{
}

LowRankFactors SpectralDecomposition::factors(const MatrixRM& m, std::int64_t k, const JobControl& job) const
{
    if (m.rows() != m_rows || m.cols() != m_cols)
        throw Error("internal: low-rank factors asked for a " + std::to_string(m.rows()) + " x " + std::to_string(m.cols()) +
                    " matrix from the decomposition of a " + std::to_string(m_rows) + " x " + std::to_string(m_cols) + " one");
    if (k < 0)
        throw Error("the rank of a low-rank factorisation must be >= 0, got " + std::to_string(k));
    const Index n = m_solver.size();
    const Index kk = std::min<Index>(k, n);
    if (kk == 0)
        return trivialFactors(m, k);

    LowRankFactors f;
    const Eigen::MatrixXd vectors = m_solver.topVectors(kk, job.slice(0.0, 0.75));
    job.progress(0.75, "low-rank factors");
    double captured = 0.0; // ||up||_F^2 = ||M V_k||_F^2 (resp. ||U_k^T M||_F^2)
    if (m_side == GramSide::Columns) {
        // up = M V_k in double: a float product would leave ||M||^2 - ||up||^2 with an error of ~1e-7 ||M||^2, i.e. a
        // residual uncertain by ~3e-4 ||M|| near full rank.
        const Eigen::MatrixXd up = widenedProduct(m, vectors, job.slice(0.75, 1.0));
        captured = up.squaredNorm();
        f.up = up.cast<float>();
        f.down = vectors.transpose().cast<float>();
    } else {
        MatrixRMd up, down;
        captured = leftFactors(m, vectors, up, down);
        f.up = up.cast<float>();
        f.down = down.cast<float>();
    }
    f.singular.assign(m_singular.begin(), m_singular.begin() + kk);
    CompensatedSum tail;
    for (Index i = n - 1; i >= kk; --i)
        tail.add(std::max(m_solver.values()(i), 0.0));
    f.optimalResidual = std::sqrt(std::max(tail.value(), 0.0));
    // With orthonormal rows in down and up = M down^T, ||M - up down||^2 = ||M||^2 - ||up||^2 exactly.
    f.residual = std::sqrt(std::max(m_squaredNorm - captured, 0.0));
    padTo(f, m.rows(), m.cols(), k);
    job.progress(1.0, "low-rank factors");
    return f;
}

bool lowRankIsExact(std::int64_t rows, std::int64_t cols, std::int64_t k, const LowRankOptions& options)
{
    const std::int64_t minDim = std::min(rows, cols);
    const std::int64_t kk = std::min(k, minDim);
    return minDim <= options.exactLimit || kk + std::max<std::int64_t>(options.oversampling, 0) >= minDim;
}

LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options, const JobControl& job)
{
    if (k < 0)
        throw Error("the rank of a low-rank factorisation must be >= 0, got " + std::to_string(k));
    const Index minDim = std::min(m.rows(), m.cols());
    if (minDim == 0 || k == 0)
        return trivialFactors(m, k);
    if (!lowRankIsExact(m.rows(), m.cols(), k, options)) {
        LowRankFactors f = randomizedLowRank(m, std::min<Index>(k, minDim), options, job);
        padTo(f, m.rows(), m.cols(), k);
        return f;
    }
    const SpectralDecomposition spectral(m, job.slice(0.0, 0.6));
    return spectral.factors(m, k, job.slice(0.6, 1.0));
}

} // namespace mla
