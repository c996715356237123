#pragma once

#include "tensor/tensor.h"

#include <cstddef>

namespace mla {

// The hot loops of inference, in the weight's own dtype. Decode is a matrix-vector product bound by memory
// bandwidth, so weights are streamed once per token and converted to float32 in registers; prefill converts panels
// of rows once and multiplies them with a register-blocked GEMM kernel (Eigen's GEMM in the generic build).

// y[W.rows()] = W * x, threads over rows.
void matvec(const Tensor& W, const float* x, float* y);

// Y[n, W.rows()] = X[n, W.cols()] * W^T.  Uses matvec when n == 1.
void matmulTransposed(const Tensor& W, const MatrixRM& X, MatrixRM& Y);

// Name of the instruction set the kernels dispatched to on this CPU ("avx2+fma+f16c" or "generic").
const char* kernelInstructionSet();

// Sums `count` floats with the streaming kernel, on all threads. Used by the bandwidth benchmark as the
// machine's read-bandwidth reference for the same instruction set the decode kernels use.
double streamingSum(const float* data, std::size_t count);

namespace detail {
struct KernelTable {
    void (*toFloat[3])(const void* src, float* dst, std::size_t n);
    // out[r] = dot(row r, x) for `rowCount` consecutive rows of `cols` elements.
    void (*dotRows[3])(const void* rows, std::size_t cols, std::size_t rowCount, const float* x, float* out);
    // Y[t, r] = dot(row r, X[t]) for `rowCount` consecutive rows and n tokens (row strides ldx, ldy); nullptr
    // where Eigen's GEMM on converted rows is used instead.
    void (*gemmRows[3])(const void* rows, std::size_t cols, std::size_t rowCount, const float* X, std::size_t ldx,
                        std::size_t n, float* Y, std::size_t ldy);
    double (*sum)(const float* data, std::size_t n);
};
const KernelTable& genericKernels();
const KernelTable* avx2Kernels(); // nullptr when not compiled in
const KernelTable& activeKernels();
} // namespace detail

} // namespace mla
