#include "backend/cuda/cuda_linalg.h"

#include "backend/cuda/cuda_kernels.cuh"
#include "util/error.h"

#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mla::cuda {
namespace {

using Eigen::Index;

// The same constants and helpers as numerics/decompositions.cpp, so that the factors have the same contract.
constexpr double kWeakRow = 1e-4;

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

int checkedInt(std::int64_t v, const char* what)
{
    if (v < 0 || v > std::numeric_limits<int>::max())
        throw Error(std::string("a matrix is too large for the GPU path (") + what + " = " + std::to_string(v) + ")");
    return static_cast<int>(v);
}

// numerics/decompositions.cpp's leftFactors with B = U^T M already computed (on the GPU): down rows = normalised rows
// of B, up = U scaled by the row norms; weak rows orthogonalised against the strong ones. Returns ||B||_F^2.
double leftFactorsFrom(Index rows, Index cols, const Eigen::MatrixXd& u, const Eigen::MatrixXd& b, MatrixRMd& up, MatrixRMd& down)
{
    const Index kk = u.cols();
    const Eigen::VectorXd norms = b.rowwise().norm();
    const double largest = kk > 0 ? norms.maxCoeff() : 0.0;
    up = MatrixRMd::Zero(rows, kk);
    down = MatrixRMd::Zero(kk, cols);
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
        Eigen::MatrixXd bw(r, cols), uw(rows, r), ds(s, cols);
        for (Index i = 0; i < r; ++i) {
            bw.row(i) = b.row(weak[static_cast<std::size_t>(i)]);
            uw.col(i) = u.col(weak[static_cast<std::size_t>(i)]);
        }
        for (Index i = 0; i < s; ++i)
            ds.row(i) = down.row(strong[static_cast<std::size_t>(i)]);
        Eigen::MatrixXd c = Eigen::MatrixXd::Zero(r, s);
        for (int pass = 0; pass < 2 && s > 0; ++pass) {
            const Eigen::MatrixXd step = bw * ds.transpose();
            bw.noalias() -= step * ds;
            c += step;
        }
        Eigen::HouseholderQR<Eigen::MatrixXd> qr(bw.transpose());
        Eigen::MatrixXd q = Eigen::MatrixXd::Identity(cols, r);
        qr.householderQ().applyThisOnTheLeft(q);
        const Eigen::MatrixXd rt = qr.matrixQR().topRows(r).triangularView<Eigen::Upper>().toDenseMatrix().transpose();
        const Eigen::MatrixXd upStrongExtra = uw * c;
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

void requireFinite(const MatrixRM& m)
{
    if (!m.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
}

} // namespace

void Linalg::widen(const MatrixRM& m, DeviceBuffer<double>& dst)
{
    const std::size_t n = static_cast<std::size_t>(m.size());
    dst.reserve(std::max<std::size_t>(n, 1));
    if (n == 0)
        return;
    m_float.reserve(n);
    check(cudaMemcpyAsync(m_float.data(), m.data(), n * sizeof(float), cudaMemcpyHostToDevice, m_ctx.compute), "upload");
    kernels::floatToDouble(m_float.data(), dst.data(), static_cast<std::int64_t>(n), m_ctx.compute);
}

// Full DGEMMs rather than DSYRK: on an H100 cuBLAS's DSYRK is many times slower than the DGEMM of twice the work
// (docs/benchmarks.md); the host copies still mirror the lower triangle so that the result is exactly symmetric.
void Linalg::gramOnDevice(const double* a, std::int64_t rows, std::int64_t cols, GramSide side, DeviceBuffer<double>& g)
{
    const double one = 1.0, zero = 0.0;
    if (side == GramSide::Columns) {
        const int n = checkedInt(cols, "columns"), k = checkedInt(rows, "rows");
        g.reserve(static_cast<std::size_t>(n) * static_cast<std::size_t>(n));
        // Row-major M seen column-major is M^T (cols x rows, ld cols): G = M^T M = A A^T.
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &one, a, n, a, n, &zero, g.data(), n), "cublasDgemm (Gram)");
    } else {
        const int n = checkedInt(rows, "rows"), k = checkedInt(cols, "columns");
        g.reserve(static_cast<std::size_t>(n) * static_cast<std::size_t>(n));
        // G = M M^T = A^T A with A = M^T (cols x rows, ld cols).
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, k, &one, a, k, a, k, &zero, g.data(), n), "cublasDgemm (Gram)");
    }
}

void Linalg::eigenOnDevice(DeviceBuffer<double>& g, std::int64_t n64, bool vectors)
{
    const int n = checkedInt(n64, "order");
    m_values.reserve(static_cast<std::size_t>(n));
    m_info.reserve(1);
    const cusolverEigMode_t mode = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    int lwork = 0;
    check(cusolverDnDsyevd_bufferSize(m_ctx.solver, mode, CUBLAS_FILL_MODE_LOWER, n, g.data(), n, m_values.data(), &lwork),
          "cusolverDnDsyevd_bufferSize");
    m_work.reserve(static_cast<std::size_t>(std::max(lwork, 1)));
    check(cusolverDnDsyevd(m_ctx.solver, mode, CUBLAS_FILL_MODE_LOWER, n, g.data(), n, m_values.data(), m_work.data(), lwork,
                           m_info.data()),
          "cusolverDnDsyevd");
    int info = 0;
    download(m_ctx, &info, m_info.data(), sizeof(int));
    if (info != 0)
        throw Error("the GPU symmetric eigen-solver failed (cuSOLVER info " + std::to_string(info) + ")");
    m_hostValues.resize(static_cast<std::size_t>(n));
    download(m_ctx, m_hostValues.data(), m_values.data(), static_cast<std::size_t>(n) * sizeof(double));
}

std::vector<double> Linalg::singularFromDevice(DeviceBuffer<double>& a, std::int64_t rows, std::int64_t cols)
{
    const GramSide side = smallerGramSide(rows, cols);
    const std::int64_t n = side == GramSide::Columns ? cols : rows;
    gramOnDevice(a.data(), rows, cols, side, m_g);
    eigenOnDevice(m_g, n, false);
    std::vector<double> s(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
        s[static_cast<std::size_t>(i)] = std::sqrt(std::max(m_hostValues[static_cast<std::size_t>(n - 1 - i)], 0.0));
    return s;
}

Eigen::MatrixXd Linalg::gram(const MatrixRM& m, GramSide side)
{
    requireFinite(m);
    const std::int64_t n = side == GramSide::Columns ? m.cols() : m.rows();
    Eigen::MatrixXd g(n, n);
    if (n == 0)
        return g;
    if (m.size() == 0) {
        g.setZero();
        return g;
    }
    widen(m, m_a);
    gramOnDevice(m_a.data(), m.rows(), m.cols(), side, m_g);
    download(m_ctx, g.data(), m_g.data(), static_cast<std::size_t>(n * n) * sizeof(double));
    g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
    return g;
}

Eigen::MatrixXd Linalg::gram(const MatrixXdRM& m, GramSide side)
{
    if (!m.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    const std::int64_t n = side == GramSide::Columns ? m.cols() : m.rows();
    Eigen::MatrixXd g(n, n);
    if (n == 0)
        return g;
    if (m.size() == 0) {
        g.setZero();
        return g;
    }
    m_a.reserve(static_cast<std::size_t>(m.size()));
    upload(m_ctx, m_a.data(), m.data(), static_cast<std::size_t>(m.size()) * sizeof(double));
    gramOnDevice(m_a.data(), m.rows(), m.cols(), side, m_g);
    download(m_ctx, g.data(), m_g.data(), static_cast<std::size_t>(n * n) * sizeof(double));
    g.triangularView<Eigen::StrictlyUpper>() = g.transpose();
    return g;
}

Eigen::VectorXd Linalg::symmetricEigenvalues(const Eigen::MatrixXd& a)
{
    const std::int64_t n = a.rows();
    Eigen::VectorXd values(n);
    if (n == 0)
        return values;
    if (!a.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    m_g.reserve(static_cast<std::size_t>(n * n));
    upload(m_ctx, m_g.data(), a.data(), static_cast<std::size_t>(n * n) * sizeof(double));
    eigenOnDevice(m_g, n, false);
    for (std::int64_t i = 0; i < n; ++i)
        values(i) = m_hostValues[static_cast<std::size_t>(n - 1 - i)];
    return values;
}

std::vector<double> Linalg::singularValues(const MatrixRM& m)
{
    if (std::min(m.rows(), m.cols()) == 0)
        return {};
    requireFinite(m);
    widen(m, m_a);
    return singularFromDevice(m_a, m.rows(), m.cols());
}

std::vector<double> Linalg::singularValues(const MatrixXdRM& m)
{
    if (std::min(m.rows(), m.cols()) == 0)
        return {};
    if (!m.allFinite())
        throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
    m_a.reserve(static_cast<std::size_t>(m.size()));
    upload(m_ctx, m_a.data(), m.data(), static_cast<std::size_t>(m.size()) * sizeof(double));
    return singularFromDevice(m_a, m.rows(), m.cols());
}

std::vector<std::vector<double>> Linalg::spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right)
{
    std::vector<std::vector<double>> out;
    if (right) {
        if (!right->allFinite())
            throw Error("cannot decompose a matrix with non-finite values (NaN or Inf)");
        m_b.reserve(static_cast<std::size_t>(std::max<Index>(right->size(), 1)));
        upload(m_ctx, m_b.data(), right->data(), static_cast<std::size_t>(right->size()) * sizeof(double));
    }
    for (const MatrixRM* m : matrices) {
        if (!right) {
            out.push_back(singularValues(*m));
            continue;
        }
        if (m->cols() != right->rows())
            throw Error("internal: spectra of a product with mismatched shapes");
        const std::int64_t r = m->rows(), d = m->cols(), e = right->cols();
        if (std::min(r, e) == 0) {
            out.emplace_back();
            continue;
        }
        requireFinite(*m);
        widen(*m, m_a);
        m_c.reserve(static_cast<std::size_t>(r * e));
        const double one = 1.0, zero = 0.0;
        // (M S)^T = S^T M^T, column-major: S (row-major d x e) is S^T (e x d, ld e), M is M^T (d x r, ld d).
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, checkedInt(e, "cols"), checkedInt(r, "rows"), checkedInt(d, "inner"),
                          &one, m_b.data(), checkedInt(e, "ld"), m_a.data(), checkedInt(d, "ld"), &zero, m_c.data(),
                          checkedInt(e, "ld")),
              "cublasDgemm");
        out.push_back(singularFromDevice(m_c, r, e));
    }
    return out;
}

MatrixXdRM Linalg::multiply(const MatrixRM& a, const MatrixXdRM& b)
{
    if (a.cols() != b.rows())
        throw Error("internal: product of a " + std::to_string(a.cols()) + "-column matrix with " + std::to_string(b.rows()) + " rows");
    const std::int64_t r = a.rows(), d = a.cols(), e = b.cols();
    MatrixXdRM out(r, e);
    if (out.size() == 0)
        return out;
    if (d == 0) {
        out.setZero();
        return out;
    }
    widen(a, m_a);
    m_b.reserve(static_cast<std::size_t>(b.size()));
    upload(m_ctx, m_b.data(), b.data(), static_cast<std::size_t>(b.size()) * sizeof(double));
    m_c.reserve(static_cast<std::size_t>(r * e));
    const double one = 1.0, zero = 0.0;
    check(cublasDgemm(m_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, checkedInt(e, "cols"), checkedInt(r, "rows"), checkedInt(d, "inner"), &one,
                      m_b.data(), checkedInt(e, "ld"), m_a.data(), checkedInt(d, "ld"), &zero, m_c.data(), checkedInt(e, "ld")),
          "cublasDgemm");
    download(m_ctx, out.data(), m_c.data(), static_cast<std::size_t>(out.size()) * sizeof(double));
    return out;
}

double Linalg::reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down)
{
    if (up.rows() != m.rows() || down.cols() != m.cols() || up.cols() != down.rows())
        throw Error("internal: reconstruction error of mismatched factors");
    const std::int64_t r = m.rows(), c = m.cols(), k = up.cols();
    if (r * c == 0)
        return 0.0;
    widen(m, m_a);
    if (k > 0) {
        widen(up, m_b);
        widen(down, m_c);
        const double minusOne = -1.0, one = 1.0;
        // (M - U D)^T = M^T - D^T U^T: D (row-major k x c) is D^T (c x k, ld c); U is U^T (k x r, ld k).
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, checkedInt(c, "cols"), checkedInt(r, "rows"), checkedInt(k, "rank"),
                          &minusOne, m_c.data(), checkedInt(c, "ld"), m_b.data(), checkedInt(k, "ld"), &one, m_a.data(),
                          checkedInt(c, "ld")),
              "cublasDgemm");
    }
    double norm = 0.0;
    check(cublasDnrm2(m_ctx.blas, checkedInt(r * c, "elements"), m_a.data(), 1, &norm), "cublasDnrm2");
    return norm;
}

LowRankFactors Linalg::lowRankFactors(const MatrixRM& m, std::int64_t k)
{
    if (k < 0)
        throw Error("the rank of a low-rank factorisation must be >= 0, got " + std::to_string(k));
    const Index rows = m.rows(), cols = m.cols();
    const Index minDim = std::min(rows, cols);
    if (minDim == 0 || k == 0)
        return trivialFactors(m, k);
    requireFinite(m);
    const Index kk = std::min<Index>(k, minDim);
    const GramSide side = smallerGramSide(rows, cols);
    const Index n = side == GramSide::Columns ? cols : rows;

    widen(m, m_a);
    gramOnDevice(m_a.data(), rows, cols, side, m_g);
    // ||M||_F^2 as the Gram's trace, summed in order as Eigen's trace() does.
    m_c.reserve(static_cast<std::size_t>(n));
    check(cublasDcopy(m_ctx.blas, checkedInt(n, "order"), m_g.data(), checkedInt(n + 1, "stride"), m_c.data(), 1), "cublasDcopy");
    std::vector<double> diagonal(static_cast<std::size_t>(n));
    download(m_ctx, diagonal.data(), m_c.data(), diagonal.size() * sizeof(double));
    double squaredNorm = 0.0;
    for (double v : diagonal)
        squaredNorm += v;

    eigenOnDevice(m_g, n, true);
    std::vector<double> values(static_cast<std::size_t>(n)); // descending
    for (Index i = 0; i < n; ++i)
        values[static_cast<std::size_t>(i)] = m_hostValues[static_cast<std::size_t>(n - 1 - i)];
    m_b.reserve(static_cast<std::size_t>(n * kk));
    kernels::reverseLastColumns(m_g.data(), n, kk, m_b.data(), m_ctx.compute); // V_k or U_k: n x kk, column-major

    LowRankFactors f;
    double captured = 0.0;
    const double one = 1.0, zero = 0.0;
    if (side == GramSide::Columns) {
        // up = M V_k: column-major up^T (kk x rows) = V_k^T M^T.
        m_c.reserve(static_cast<std::size_t>(rows * kk));
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, checkedInt(kk, "rank"), checkedInt(rows, "rows"), checkedInt(cols, "cols"),
                          &one, m_b.data(), checkedInt(cols, "ld"), m_a.data(), checkedInt(cols, "ld"), &zero, m_c.data(),
                          checkedInt(kk, "ld")),
              "cublasDgemm");
        MatrixRMd up(rows, kk);
        download(m_ctx, up.data(), m_c.data(), static_cast<std::size_t>(up.size()) * sizeof(double));
        MatrixRMd down(kk, cols); // V_k column-major (cols x kk) is V_k^T row-major
        download(m_ctx, down.data(), m_b.data(), static_cast<std::size_t>(down.size()) * sizeof(double));
        captured = up.squaredNorm();
        f.up = up.cast<float>();
        f.down = down.cast<float>();
    } else {
        // B^T = M^T U_k, column-major (cols x kk).
        m_c.reserve(static_cast<std::size_t>(cols * kk));
        check(cublasDgemm(m_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, checkedInt(cols, "cols"), checkedInt(kk, "rank"), checkedInt(rows, "rows"),
                          &one, m_a.data(), checkedInt(cols, "ld"), m_b.data(), checkedInt(rows, "ld"), &zero, m_c.data(),
                          checkedInt(cols, "ld")),
              "cublasDgemm");
        Eigen::MatrixXd bT(cols, kk), u(rows, kk);
        download(m_ctx, bT.data(), m_c.data(), static_cast<std::size_t>(bT.size()) * sizeof(double));
        download(m_ctx, u.data(), m_b.data(), static_cast<std::size_t>(u.size()) * sizeof(double));
        MatrixRMd up, down;
        captured = leftFactorsFrom(rows, cols, u, bT.transpose(), up, down);
        f.up = up.cast<float>();
        f.down = down.cast<float>();
    }
    f.singular.resize(static_cast<std::size_t>(kk));
    for (Index i = 0; i < kk; ++i)
        f.singular[static_cast<std::size_t>(i)] = std::sqrt(std::max(values[static_cast<std::size_t>(i)], 0.0));
    CompensatedSum tail;
    for (Index i = n - 1; i >= kk; --i)
        tail.add(std::max(values[static_cast<std::size_t>(i)], 0.0));
    f.optimalResidual = std::sqrt(std::max(tail.value(), 0.0));
    f.residual = std::sqrt(std::max(squaredNorm - captured, 0.0));
    padTo(f, rows, cols, k);
    return f;
}

} // namespace mla::cuda
