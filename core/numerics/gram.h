#pragma once

#include "tensor/tensor.h"
#include "util/job_control.h"

#include <Eigen/Core>

namespace mla {

// Which Gram matrix of an m x n matrix M: M^T M (n x n, "columns") or M M^T (m x m, "rows"). The spectral routines
// always take the smaller one; its nonzero eigenvalues are the squared singular values of M either way.
enum class GramSide { Columns, Rows };

inline GramSide smallerGramSide(Eigen::Index rows, Eigen::Index cols) { return rows < cols ? GramSide::Rows : GramSide::Columns; }

// The Gram matrix accumulated in double (the float input is widened chunk by chunk, so no double copy of M is made).
// Only the lower triangle is computed with GEMMs; the upper one is mirrored at the end. Both cores work on
// independent column blocks of the triangle.
Eigen::MatrixXd gramMatrix(const MatrixRM& m, GramSide side, const JobControl& job = {});
Eigen::MatrixXd gramMatrix(const MatrixRMd& m, GramSide side, const JobControl& job = {});

// gram += X^T X and cross += X^T Y in double for float rows X [t, n], Y [t, m] (gram n x n, cross n x m): the
// covariances and normal equations that calibration, allocation and refits accumulate sequence by sequence, on the
// dense kernels (AVX2 + FMA where the CPU has them) instead of Eigen's SSE2 double GEMM.
void addGram(MatrixRMd& gram, const MatrixRM& x);
void addCrossProduct(MatrixRMd& cross, const MatrixRM& x, const MatrixRM& y);

// M V in double for a float M (widened a block of rows at a time, so no double copy of M is made) and a double V:
// what makes ||M||^2 - ||M V||^2 an accurate residual when the residual is far below ||M||.
Eigen::MatrixXd widenedProduct(const MatrixRM& m, const Eigen::MatrixXd& v, const JobControl& job = {});

// ||M||_F^2 summed in double.
double squaredFrobeniusNorm(const MatrixRM& m);
double squaredFrobeniusNorm(const MatrixRMd& m);

} // namespace mla
