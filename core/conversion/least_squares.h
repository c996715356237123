#pragma once

#include "numerics/decompositions.h"

namespace mla {

// Accumulates the normal equations of a linear map fitted by least squares, one batch of rows at a time:
// minimise sum_t ||y_t - W x_t||^2 over W [outputs, inputs] with features x_t and targets y_t.
class LeastSquaresFit {
public:
    LeastSquaresFit(Eigen::Index inputs, Eigen::Index outputs);

    void add(const MatrixRM& features, const MatrixRM& targets); // rows are samples
    std::int64_t samples() const { return m_samples; }
    double targetEnergy() const { return m_targetEnergy; } // sum ||y||^2 of everything added

    // The sum of squared residuals of W on everything added.
    double residual(const MatrixRM& w) const;

    // The minimiser of residual(W) + lambda ||W - W0||_F^2 with lambda = ridge * trace(X^T X) / inputs. Pulling
    // toward the starting point W0 (rather than toward zero) guarantees residual(result) <= residual(W0).
    MatrixRM solve(const MatrixRM& w0, double ridge) const;

private:
    MatrixXdRM m_gram;    // X^T X
    MatrixXdRM m_cross;   // X^T Y
    double m_targetEnergy = 0.0; // sum ||y||^2
    std::int64_t m_samples = 0;
};

} // namespace mla
