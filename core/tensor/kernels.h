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

// Y[n, W.rows()] = X[n, W.cols()] * W^T with every row of Y bit-identical to matvec(W, X.row(i)): the same dot
// product kernel and summation order, but each block of weight rows is read from memory once and applied to all n
// rows while it sits in cache. A batched decode step (several sequences, one token each) uses it, so that it gives
// exactly the logits of decoding each sequence on its own, whatever the batch size or the number of threads.
void matvecRows(const Tensor& W, const MatrixRM& X, MatrixRM& Y);

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
    // Y[t, r] = dot(row r, X[t]) for n tokens, each computed exactly as dotRows computes it; nullptr where
    // matvecRows calls dotRows once per token instead.
    void (*dotRowsTokens[3])(const void* rows, std::size_t cols, std::size_t rowCount, const float* X, std::size_t ldx,
                             std::size_t n, float* Y, std::size_t ldy);
    double (*sum)(const float* data, std::size_t n);
};
const KernelTable& genericKernels();
const KernelTable* avx2Kernels(); // nullptr when not compiled in
const KernelTable& activeKernels();
} // namespace detail

} // namespace mla
