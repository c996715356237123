#include "conversion/least_squares.h"

#include "numerics/dense_kernels.h"
#include "numerics/gram.h"
#include "util/error.h"

#include <Eigen/Cholesky>

namespace mla {

LeastSquaresFit::LeastSquaresFit(Eigen::Index inputs, Eigen::Index outputs)
    : m_gram(MatrixXdRM::Zero(inputs, inputs)), m_cross(MatrixXdRM::Zero(inputs, outputs))
{
}

void LeastSquaresFit::add(const MatrixRM& features, const MatrixRM& targets)
{
    if (features.rows() != targets.rows() || features.cols() != m_gram.rows() || targets.cols() != m_cross.cols())
        throw Error("internal: least-squares batch of the wrong shape");
    addGram(m_gram, features);
    addCrossProduct(m_cross, features, targets);
    m_targetEnergy += squaredFrobeniusNorm(targets);
    m_samples += features.rows();
}

double LeastSquaresFit::residual(const MatrixRM& w) const
{
    // sum ||y - W x||^2 = sum ||y||^2 - 2 tr(W X^T Y) + tr(W X^T X W^T)
    const MatrixXdRM wd = w.cast<double>();
    const double cross = (wd.transpose().array() * m_cross.array()).sum();
    MatrixXdRM wg(wd.rows(), m_gram.cols());
    gemmRowMajor(wg, 1.0, wd, m_gram, 0.0); // the AVX2 kernels: W_o's quadratic term is the size of a layer's Gram
    const double quadratic = wg.cwiseProduct(wd).sum();
    return std::max(0.0, m_targetEnergy - 2.0 * cross + quadratic);
}

MatrixRM LeastSquaresFit::solve(const MatrixRM& w0, double ridge) const
{
    const Eigen::Index n = m_gram.rows();
    const double scale = n > 0 ? m_gram.trace() / static_cast<double>(n) : 0.0;
    const double lambda = std::max(ridge * scale, 1e-12 * std::max(scale, 1.0));
    MatrixXdRM a = m_gram;
    a.diagonal().array() += lambda;
    const MatrixXdRM rhs = m_cross + lambda * w0.cast<double>().transpose();
    Eigen::LLT<MatrixXdRM> llt(a);
    if (llt.info() != Eigen::Success)
        throw Error("least-squares refit: the normal equations are not positive definite");
    const MatrixXdRM wt = llt.solve(rhs);
    return wt.transpose().cast<float>();
}

} // namespace mla
