#include "engine/ops.h"

#include "tensor/kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mla {

void rmsNormRows(const MatrixRM& x, const VectorF& weight, float eps, MatrixRM& out)
{
    out.resize(x.rows(), x.cols());
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        const float meanSquare = x.row(i).squaredNorm() / static_cast<float>(x.cols());
        const float scale = 1.0f / std::sqrt(meanSquare + eps);
        out.row(i) = (x.row(i) * scale).cwiseProduct(weight.transpose());
    }
}

void rmsNormBlocks(MatrixRM& x, const VectorF& weight, float eps, std::int64_t width)
{
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        for (Eigen::Index b = 0; b + width <= x.cols(); b += width) {
            auto block = x.row(i).segment(b, width);
            const float scale = 1.0f / std::sqrt(block.squaredNorm() / static_cast<float>(width) + eps);
            block = (block * scale).cwiseProduct(weight.transpose());
        }
    }
}

void addBiasRows(MatrixRM& x, const VectorF& bias)
{
    if (bias.size() == 0)
        return;
    x.rowwise() += bias.transpose();
}

void swiGluInPlace(MatrixRM& gate, const MatrixRM& up)
{
    const Eigen::Index n = gate.size();
    float* g = gate.data();
    const float* u = up.data();
    for (Eigen::Index i = 0; i < n; ++i) {
        const float v = g[i];
        g[i] = v / (1.0f + std::exp(-v)) * u[i];
    }
}

void linear(const Tensor& weight, const VectorF& bias, const MatrixRM& x, MatrixRM& y)
{
    matmulTransposed(weight, x, y);
    addBiasRows(y, bias);
}

void softmaxRowsInPlace(float* data, std::int64_t rows, std::int64_t stride, const std::int64_t* begin, const std::int64_t* end)
{
    for (std::int64_t r = 0; r < rows; ++r) {
        float* row = data + r * stride;
        const std::int64_t b = begin[r];
        const std::int64_t e = end[r];
        float maxValue = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = b; j < e; ++j)
            maxValue = std::max(maxValue, row[j]);
        float sum = 0.0f;
        for (std::int64_t j = b; j < e; ++j) {
            row[j] = std::exp(row[j] - maxValue);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < stride; ++j)
            row[j] = (j >= b && j < e) ? row[j] * inv : 0.0f;
    }
}

double logSumExp(const float* x, std::int64_t n)
{
    double maxValue = -std::numeric_limits<double>::infinity();
    for (std::int64_t i = 0; i < n; ++i)
        maxValue = std::max(maxValue, static_cast<double>(x[i]));
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
        sum += std::exp(static_cast<double>(x[i]) - maxValue);
    return maxValue + std::log(sum);
}

} // namespace mla
