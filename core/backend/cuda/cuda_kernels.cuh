#pragma once

// Launchers of the CUDA backend's own kernels (cuda_kernels.cu). Plain pointers and sizes only, so that the host code
// that calls them is compiled by the C++ compiler. Every launcher is asynchronous on `stream`. Matrices are row-major
// [rows, cols] unless a comment says otherwise. Element type codes follow mla::DType: 0 = F32, 1 = F16, 2 = BF16.
#include <cuda_runtime.h>

#include <cstdint>

namespace mla::cuda::kernels {

// dst[i] = float(src[i]) for a weight dtype (F32 copies).
void toFloat(int dtype, const void* src, float* dst, std::int64_t n, cudaStream_t stream);
// dst[i] = src[i] rounded to the dtype (round to nearest even), for native-precision GEMM inputs.
void fromFloat(int dtype, const float* src, void* dst, std::int64_t n, cudaStream_t stream);
void floatToDouble(const float* src, double* dst, std::int64_t n, cudaStream_t stream);
void doubleToFloat(const double* src, float* dst, std::int64_t n, cudaStream_t stream);

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w
void rmsNormRows(const float* x, const float* w, float eps, float* out, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// The same in place over consecutive blocks of `width` in each row (per-head q/k norms).
void rmsNormBlocks(float* x, const float* w, float eps, std::int64_t rows, std::int64_t cols, std::int64_t width,
                   cudaStream_t stream);
// x[r, :] += bias
void addBias(float* x, const float* bias, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// h += (y + bias), bias may be null: the residual update h += linear(...) in the CPU's order.
void addResidual(float* h, const float* y, const float* bias, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// gate = silu(gate) * up
void swiGlu(float* gate, const float* up, std::int64_t n, cudaStream_t stream);

// Pre-RoPE pair statistics of x [rows, heads*headDim] (pair j of a head = dims j and j + headDim/2), added into
// norms [heads, pairs] (sum of sqrt(a^2 + b^2)) and moments [heads, 3*pairs] (sums of a^2, b^2, a*b), in double.
void pairStatistics(const float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim, double* norms,
                    double* moments, cudaStream_t stream);

// Rotates the kept pairs of every head of x [rows, heads*headDim] in place: row r at position positions[r] (or
// firstPosition + r when positions is null). pairIndex/freqs: [kvHeads, pairCount], query head h uses kv head h/group.
void rotate(float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim, std::int64_t group, const int* pairIndex,
            const float* freqs, std::int64_t pairCount, const int* positions, std::int64_t firstPosition, cudaStream_t stream);

// Rows [t0, t0+count) of x [T, heads*d] to the head-major layout out [heads, count, d], and back.
void splitHeads(const float* x, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d, float* out,
                cudaStream_t stream);
void mergeHeads(const float* in, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d, float* x,
                cudaStream_t stream);

// Row-wise masked softmax of scores [blocks * rowsPerBlock, n]: row r is query (r mod rowsPerBlock), at position
// firstPosition + (r mod rowsPerBlock); it sees keys j with j <= position and, with a window, j > position - window.
// Scores are multiplied by `scale` first; masked entries become 0.
void maskedSoftmax(float* scores, std::int64_t rows, std::int64_t rowsPerBlock, std::int64_t n, std::int64_t firstPosition,
                   std::int64_t window, float scale, cudaStream_t stream);

// y[t, r] = dot(W[r, :], x[t, :]) for t < tokens (tokens <= 8): the decode path, weights read once in their dtype.
void gemvRows(int dtype, const void* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t tokens, float* y,
              cudaStream_t stream);

// dst [n, k] (column-major) = the last k columns of src [n, n] (column-major) in reverse order: eigenvectors of the k
// largest eigenvalues, largest first, from syevd's ascending order.
void reverseLastColumns(const double* src, std::int64_t n, std::int64_t k, double* dst, cudaStream_t stream);

} // namespace mla::cuda::kernels
