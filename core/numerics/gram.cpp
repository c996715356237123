#include "numerics/gram.h"

#include "numerics/dense_kernels.h"
#include "numerics/symmetric_kernels.h"
#include "util/error.h"

#include <algorithm>
#include <string>

namespace mla {
namespace {

// Rows of M (or columns, for the M M^T side) widened to double per chunk: large enough for GEMM efficiency, small
// enough (a few tens of MB) that no full double copy of a 7680 x 4096 weight is ever made.
constexpr Eigen::Index kChunk = 512;

// The Gram matrix of either side, both triangles filled, without checking the values.
template <typename Scalar>
Eigen::MatrixXd symmetricGram(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& m, GramSide side,
                              const JobControl& job)
{
    const Eigen::Index n = side == GramSide::Columns ? m.cols() : m.rows();
    const Eigen::Index terms = side == GramSide::Columns ? m.rows() : m.cols();
    Eigen::MatrixXd g = Eigen::MatrixXd::Zero(n, n);
    Eigen::MatrixXd chunk;
    for (Eigen::Index t0 = 0; t0 < terms; t0 += kChunk) {
        job.progress(static_cast<double>(t0) / static_cast<double>(std::max<Eigen::Index>(terms, 1)), "Gram matrix");
        const Eigen::Index tc = std::min(kChunk, terms - t0);
        // chunk: tc x n, so that G += chunk^T chunk.
        if (side == GramSide::Columns)
            chunk = m.middleRows(t0, tc).template cast<double>();
        else
            chunk = m.middleCols(t0, tc).transpose().template cast<double>();
        syrkLowerAdd(g, chunk);
    }
    // Mirror so callers may read either triangle.
    g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
    job.progress(1.0, "Gram matrix");
    return g;
}

template <typename Scalar>
Eigen::MatrixXd gramImpl(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& m, GramSide side,
                         const JobControl& job)
{
    if (!m.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    return symmetricGram(m, side, job);
}

template <typename Matrix>
double squaredNormImpl(const Matrix& m)
{
    double sum = 0.0;
    for (Eigen::Index r = 0; r < m.rows(); ++r)
        sum += m.row(r).template cast<double>().squaredNorm();
    return sum;
}

} // namespace

Eigen::MatrixXd widenedProduct(const MatrixRM& m, const Eigen::MatrixXd& v, const JobControl& job)
{
    if (m.cols() != v.rows())
        throw Error("internal: product of a " + std::to_string(m.cols()) + "-column matrix with " + std::to_string(v.rows()) + " rows");
    Eigen::MatrixXd out(m.rows(), v.cols());
    Eigen::MatrixXd chunkT; // cols x rc: the chunk's rows, widened, as columns
    for (Eigen::Index r0 = 0; r0 < m.rows(); r0 += kChunk) {
        job.progress(static_cast<double>(r0) / static_cast<double>(m.rows()), "product with M");
        const Eigen::Index rc = std::min(kChunk, m.rows() - r0);
        chunkT = m.middleRows(r0, rc).transpose().cast<double>();
        gemm(out.middleRows(r0, rc), 1.0, chunkT, Op::Transpose, v, Op::None, 0.0);
    }
    return out;
}

void addGram(MatrixRMd& gram, const MatrixRM& x)
{
    const Eigen::Index n = x.cols();
    if (gram.rows() != n || gram.cols() != n)
        throw Error("internal: Gram matrix of the wrong shape");
    gram += symmetricGram(x, GramSide::Columns, {});
}

void addCrossProduct(MatrixRMd& cross, const MatrixRM& x, const MatrixRM& y)
{
    if (x.rows() != y.rows() || cross.rows() != x.cols() || cross.cols() != y.cols())
        throw Error("internal: cross product of the wrong shape");
    // cross (row-major n x m) is, read column-major, cross^T = Y^T X; chunks of rows widened to double, transposed so
    // that the kernel reads them column-major: xT [n, rows], yT [m, rows].
    Eigen::Map<Eigen::MatrixXd> crossT(cross.data(), cross.cols(), cross.rows());
    Eigen::MatrixXd xT, yT;
    for (Eigen::Index t0 = 0; t0 < x.rows(); t0 += kChunk) {
        const Eigen::Index rows = std::min(kChunk, x.rows() - t0);
        xT = x.middleRows(t0, rows).transpose().cast<double>();
        yT = y.middleRows(t0, rows).transpose().cast<double>();
        gemm(crossT, 1.0, yT, Op::None, xT, Op::Transpose, 1.0);
    }
}

Eigen::MatrixXd gramMatrix(const MatrixRM& m, GramSide side, const JobControl& job) { return gramImpl(m, side, job); }
Eigen::MatrixXd gramMatrix(const MatrixRMd& m, GramSide side, const JobControl& job) { return gramImpl(m, side, job); }

double squaredFrobeniusNorm(const MatrixRM& m) { return squaredNormImpl(m); }
double squaredFrobeniusNorm(const MatrixRMd& m) { return squaredNormImpl(m); }

} // namespace mla
