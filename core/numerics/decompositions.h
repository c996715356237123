#pragma once

#include "numerics/gram.h"
#include "numerics/symmetric_eigen.h"
#include "tensor/tensor.h"
#include "util/job_control.h"

#include <Eigen/Core>

#include <cstdint>
#include <vector>

// Spectra and best low-rank factors of weight matrices (docs/numerics.md describes the algorithms, their precision and
// the measured speed against numpy).
namespace mla {

using MatrixXdRM = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Singular values of M (descending, length min(rows, cols)), computed from the smaller Gram matrix with a symmetric
// eigenvalue solver in double precision. Values below about sqrt(machine eps) * s_max are not accurate relative to
// themselves, which is harmless for error curves: they contribute at most eps * ||M||_F^2.
std::vector<double> singularValues(const MatrixRM& m, const JobControl& job = {});
std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job = {});

// The relative Frobenius error of the best rank-k approximation for every k in [0, n]:
// err[k] = sqrt(sum_{i >= k} s_i^2 / sum_i s_i^2). err[0] = 1 and err[n] = 0, except that all are 0 for M = 0.
// The tail sums run from the smallest value up (compensated), so the tiny end of the curve keeps its relative accuracy.
std::vector<double> relativeErrorCurve(const std::vector<double>& singularValuesDescending);

// A rank-k factorisation M ~= up * down with down = V_k^T (orthonormal rows, the top right singular vectors) and
// up = M V_k = U_k S_k: the best rank-k approximation. When k >= rank(M) the product reproduces M to rounding.
// When k > min(rows, cols), the columns of up and rows of down past min(rows, cols) are zero.
struct LowRankFactors {
    MatrixRM up;    // [rows, k]
    MatrixRM down;  // [k, cols]
    std::vector<double> singular; // the k leading singular values (0 for padding)
    double residual = 0.0;        // ||M - up down||_F, measured
    double optimalResidual = -1.0; // sqrt(sum_{i >= k} s_i^2) when the full spectrum was computed, else -1
};

struct LowRankOptions {
    // Above this min(rows, cols), the top-k subspace comes from randomized subspace iteration instead of a full
    // eigen-decomposition (see docs/numerics.md for the error bound). The exact path is the faster one for the ranks
    // a conversion uses (k of the order of n/2) at every attention size measured, hence the high default; the
    // randomized path pays off for k << n, or to bound memory above it (the exact path holds an n x n double).
    std::int64_t exactLimit = 8192;
    int powerIterations = 3;
    std::int64_t oversampling = 16;
    std::uint64_t seed = 1;
};

LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options = {}, const JobControl& job = {});
// Whether lowRankFactors of a rows x cols matrix at rank k > 0 takes the exact path (a SpectralDecomposition of the
// Gram on the smaller side) rather than the randomized one.
bool lowRankIsExact(std::int64_t rows, std::int64_t cols, std::int64_t k, const LowRankOptions& options);

// Shared by every backend's lowRankFactors: zero columns of up / rows of down (and zero singular values) up to rank k,
// and the factors of rank k for an empty or rank-0 request (all zero, residual ||m||_F).
void padTo(LowRankFactors& f, Eigen::Index rows, Eigen::Index cols, Eigen::Index k);
LowRankFactors trivialFactors(const MatrixRM& m, Eigen::Index k);

// The spectrum of one matrix and, afterwards, exact factors of any rank, from one Gram matrix and one tridiagonal
// reduction (the expensive part). This is what a conversion needs per layer: the error curve to choose k, then the
// factors at that k, without decomposing twice.
class SpectralDecomposition {
public:
    explicit SpectralDecomposition(const MatrixRM& m, const JobControl& job = {});
    explicit SpectralDecomposition(const MatrixXdRM& m, const JobControl& job = {});

    // From the Gram of the matrix on its smaller side, already computed (an allocation takes each pair count's from one
    // larger Gram, of which it is a principal submatrix); factors() must then be given the matrix it is the Gram of.
    static SpectralDecomposition fromGram(Eigen::MatrixXd gram, GramSide side, std::int64_t rows, std::int64_t cols,
                                          const JobControl& job = {})
    {
        return SpectralDecomposition(std::move(gram), side, rows, cols, job);
    }

    std::int64_t rows() const { return m_rows; }
    std::int64_t cols() const { return m_cols; }
    const std::vector<double>& singularValues() const { return m_singular; } // descending, min(rows, cols) values
    double squaredNorm() const { return m_squaredNorm; }                     // ||M||_F^2, in double

    // Exact best rank-k factors of the same matrix `m` this was computed from (its shape is checked). Costs the k
    // eigenvectors, one back-transformation and one GEMM with M.
    LowRankFactors factors(const MatrixRM& m, std::int64_t k, const JobControl& job = {}) const;

private:
    SpectralDecomposition(Eigen::MatrixXd gram, GramSide side, std::int64_t rows, std::int64_t cols, const JobControl& job);

    GramSide m_side;
    std::int64_t m_rows;
    std::int64_t m_cols;
    double m_squaredNorm;
    SymmetricEigenSolver m_solver;
    std::vector<double> m_singular;
};

} // namespace mla
