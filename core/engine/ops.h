#pragma once

#include "tensor/tensor.h"

namespace mla {

// Row-wise RMSNorm: out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * weight, in float32 like Hugging Face.
void rmsNormRows(const MatrixRM& x, const VectorF& weight, float eps, MatrixRM& out);
// The same over consecutive blocks of `width` inside each row (per-head norms).
void rmsNormBlocks(MatrixRM& x, const VectorF& weight, float eps, std::int64_t width);

void addBiasRows(MatrixRM& x, const VectorF& bias);

// out = silu(gate) * up, elementwise; writes into gate.
void swiGluInPlace(MatrixRM& gate, const MatrixRM& up);

// y = x W^T (+ bias)
void linear(const Tensor& weight, const VectorF& bias, const MatrixRM& x, MatrixRM& y);

// In-place softmax of each row over its first `count[row]` entries; the rest become 0.
void softmaxRowsInPlace(float* data, std::int64_t rows, std::int64_t stride, const std::int64_t* begin, const std::int64_t* end);

// log-sum-exp of a row in double precision.
double logSumExp(const float* x, std::int64_t n);

} // namespace mla
