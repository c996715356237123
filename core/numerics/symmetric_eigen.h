#pragma once

#include "util/job_control.h"

#include <Eigen/Core>

#include <cstdint>

// The symmetric eigenvalue solver behind the spectra and the exact low-rank factors (see docs/numerics.md).
// Eigen's SelfAdjointEigenSolver reduces to tridiagonal form one column at a time with matrix-vector products only;
// at n = 4096 that takes about 47 s on this project's 2-core test machine (eigenvalues only), and all eigenvectors
// cost far more.
// This solver does the same mathematics in the LAPACK way: a blocked reduction whose trailing updates are GEMMs
// (dsytrd), the eigenvalues of the tridiagonal matrix by implicit QL (Eigen's, O(n^2)), eigenvectors only for the
// k wanted eigenvalues by inverse iteration (dstein), and a blocked back-transformation (dormtr).
namespace mla {

// T = Q^T A Q with Q = H_0 H_1 ... H_{n-2}, H_j = I - tau_j v_j v_j^T.
class TridiagonalReduction {
public:
    // Reduces `a` (symmetric; only the lower triangle is read). Its storage is kept to hold the reflectors.
    explicit TridiagonalReduction(Eigen::MatrixXd a, const JobControl& job = {});

    Eigen::Index size() const { return m_diagonal.size(); }
    const Eigen::VectorXd& diagonal() const { return m_diagonal; }
    const Eigen::VectorXd& subdiagonal() const { return m_subdiagonal; }

    // z <- Q z for z with size() rows, in blocks of reflectors (compact WY form: two GEMMs per block).
    void applyQ(Eigen::MatrixXd& z, const JobControl& job = {}) const;

private:
    Eigen::MatrixXd m_reflectors; // column j, rows j+2..n-1: the essential part of v_j (v_j is 0 above row j+1, 1 at it)
    Eigen::VectorXd m_tau;
    Eigen::VectorXd m_diagonal;
    Eigen::VectorXd m_subdiagonal;
};

// All eigenvalues of the symmetric tridiagonal matrix (diagonal, subdiagonal), descending.
Eigen::VectorXd tridiagonalEigenvalues(const Eigen::VectorXd& diagonal, const Eigen::VectorXd& subdiagonal);

// Unit eigenvectors (columns) of the tridiagonal matrix for the given eigenvalues, which must be sorted descending and
// accurate to rounding (as tridiagonalEigenvalues returns them). Inverse iteration from deterministic random starts;
// vectors whose eigenvalues lie within 1e-8 ||T|| of each other form a cluster and are orthogonalised against each
// other, the rest are orthogonal to about eps ||T|| / gap (at most ~1e-8).
Eigen::MatrixXd tridiagonalEigenvectors(const Eigen::VectorXd& diagonal, const Eigen::VectorXd& subdiagonal,
                                        const Eigen::VectorXd& eigenvalues, std::uint64_t seed = 1,
                                        const JobControl& job = {});

struct SymmetricEigen {
    Eigen::VectorXd values;  // all eigenvalues, descending
    Eigen::MatrixXd vectors; // [n, k]: unit eigenvectors of values[0 .. k)
};

// All eigenvalues and the eigenvectors of the k largest of a symmetric matrix (only its lower triangle is read).
// The matrix is scaled to unit max-norm first, so the result neither overflows nor underflows.
SymmetricEigen symmetricEigen(Eigen::MatrixXd a, Eigen::Index k, const JobControl& job = {});

// All eigenvalues, descending.
Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job = {});

// The same scaled reduction, kept so that eigenvectors can be asked for later without reducing again.
class SymmetricEigenSolver {
public:
    explicit SymmetricEigenSolver(Eigen::MatrixXd a, const JobControl& job = {});

    Eigen::Index size() const { return m_values.size(); }
    const Eigen::VectorXd& values() const { return m_values; } // descending
    // [n, k]: unit eigenvectors of values()[0 .. k).
    Eigen::MatrixXd topVectors(Eigen::Index k, const JobControl& job = {}) const;

private:
    double m_scale = 0.0; // the matrix was divided by this (0: the matrix is zero)
    TridiagonalReduction m_reduction;
    Eigen::VectorXd m_values;
};

} // namespace mla
