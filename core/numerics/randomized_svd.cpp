#include "numerics/randomized_svd.h"

#include "numerics/dense_kernels.h"
#include "numerics/random_fill.h"
#include "util/error.h"

#include <Eigen/QR>

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

using Eigen::Index;

// Orthonormal basis of the columns of y (thin Q of a Householder QR, applied in blocks).
Eigen::MatrixXd orthonormalColumns(Eigen::MatrixXd y)
{
    const Index rows = y.rows();
    const Index cols = y.cols();
    Eigen::HouseholderQR<Eigen::Ref<Eigen::MatrixXd>> qr(y);
    Eigen::MatrixXd q = Eigen::MatrixXd::Identity(rows, cols);
    qr.householderQ().applyThisOnTheLeft(q);
    return q;
}

} // namespace

LowRankFactors randomizedLowRank(const MatrixRM& m, Index k, const LowRankOptions& options, const JobControl& job)
{
    const Index minDim = std::min(m.rows(), m.cols());
    if (k <= 0 || k > minDim)
        throw Error("internal: randomized factors of rank " + std::to_string(k) + " for a matrix of min dimension " +
                    std::to_string(minDim));
    if (!m.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    const Index l = std::min<Index>(k + std::max<std::int64_t>(options.oversampling, 0), minDim);
    const int passes = std::max(options.powerIterations, 0) + 1;
    const double steps = passes + 1.0;

    // Q spans the sketch of the row space: n x l.
    Eigen::MatrixXd q(m.cols(), l);
    fillGaussian(q, options.seed, 0);
    q = orthonormalColumns(std::move(q));
    Eigen::MatrixXf qf, pf;
    for (int pass = 0; pass < passes; ++pass) {
        job.progress(pass / steps, "randomized subspace iteration");
        qf = q.cast<float>();
        const Eigen::MatrixXf y = m * qf; // rows x l
        pf = orthonormalColumns(y.cast<double>()).cast<float>();
        const Eigen::MatrixXf z = m.transpose() * pf; // cols x l
        q = orthonormalColumns(z.cast<double>());
    }

    // Rayleigh-Ritz: the best rank-k approximation of M inside the row space Q is M Q W_k W_k^T Q^T, with W_k the top
    // eigenvectors of C^T C, C = M Q.
    job.progress(passes / steps, "Rayleigh-Ritz");
    const Eigen::MatrixXd c = widenedProduct(m, q); // rows x l, in double so that the residual below is accurate
    Eigen::MatrixXd h(l, l);
    gemm(h, 1.0, c, Op::Transpose, c, Op::None, 0.0);
    const SymmetricEigen eig = symmetricEigen(std::move(h), k);
    const Eigen::MatrixXd v = q * eig.vectors; // cols x k, orthonormal (Q and W are)
    const Eigen::MatrixXd up = c * eig.vectors; // = M V
    LowRankFactors f;
    f.up = up.cast<float>();
    f.down = v.transpose().cast<float>();
    f.singular.resize(static_cast<std::size_t>(k));
    for (Index i = 0; i < k; ++i)
        f.singular[static_cast<std::size_t>(i)] = std::sqrt(std::max(eig.values(i), 0.0));
    f.residual = std::sqrt(std::max(squaredFrobeniusNorm(m) - up.squaredNorm(), 0.0));
    f.optimalResidual = -1.0;
    job.progress(1.0, "Rayleigh-Ritz");
    return f;
}

} // namespace mla
