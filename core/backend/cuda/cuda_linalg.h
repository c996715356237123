#pragma once

#include "backend/cuda/cuda_common.h"

namespace mla::cuda {

// Gram matrices (cuBLAS DSYRK in double from the float input widened on the device), symmetric eigen-decompositions
// (cuSOLVER DSYEVD), low-rank factors and the products of a conversion, with the same contracts as the CPU functions
// in numerics/ (docs/cuda-backend.md lists where the results may differ: eigenvector signs and the last bits).
// Callers hold ctx.mutex.
class Linalg {
public:
    explicit Linalg(Context& ctx) : m_ctx(ctx) {}

    Eigen::MatrixXd gram(const MatrixRM& m, GramSide side);
    Eigen::MatrixXd gram(const MatrixXdRM& m, GramSide side);
    Eigen::VectorXd symmetricEigenvalues(const Eigen::MatrixXd& a); // descending
    std::vector<double> singularValues(const MatrixRM& m);
    std::vector<double> singularValues(const MatrixXdRM& m);
    std::vector<std::vector<double>> spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right);
    LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k);
    MatrixXdRM multiply(const MatrixRM& a, const MatrixXdRM& b);
    double reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down);

private:
    // m (row-major, float) widened into `dst` on the device.
    void widen(const MatrixRM& m, DeviceBuffer<double>& dst);
    // G (n x n, column-major, lower triangle) of the row-major rows x cols matrix at `a`.
    void gramOnDevice(const double* a, std::int64_t rows, std::int64_t cols, GramSide side, DeviceBuffer<double>& g);
    // Eigenvalues (ascending) into m_values, and eigenvectors over `g` when `vectors`.
    void eigenOnDevice(DeviceBuffer<double>& g, std::int64_t n, bool vectors);
    std::vector<double> singularFromDevice(DeviceBuffer<double>& a, std::int64_t rows, std::int64_t cols);

    Context& m_ctx;
    DeviceBuffer<float> m_float;
    DeviceBuffer<double> m_a, m_b, m_c, m_g;
    DeviceBuffer<double> m_values;
    DeviceBuffer<double> m_work;
    DeviceBuffer<int> m_info;
    std::vector<double> m_hostValues; // ascending, from the last eigenOnDevice
};

} // namespace mla::cuda
