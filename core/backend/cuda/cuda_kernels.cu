// The CUDA backend's element-wise, normalisation, RoPE, softmax and decode kernels (docs/cuda-backend.md). GEMMs and
// decompositions go to cuBLAS / cuSOLVER from the host code; what is here is memory-bound glue around them.
#include "cuda_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "util/error.h"

#include <string>

namespace mla::cuda::kernels {
namespace {

constexpr int kThreads = 256;

inline unsigned blocksFor(std::int64_t n, int threads = kThreads)
{
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

__device__ __forceinline__ float loadAsFloat(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float loadAsFloat(const __half* p, std::int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float loadAsFloat(const __nv_bfloat16* p, std::int64_t i) { return __bfloat162float(p[i]); }

__device__ __forceinline__ float warpSum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warpMax(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions for blockDim.x == kThreads; `shared` holds kThreads / 32 floats.
__device__ float blockSum(float v, float* shared)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warpSum(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < kThreads / 32; ++i)
        total += shared[i];
    return total;
}
__device__ float blockMax(float v, float* shared)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warpMax(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float m = shared[0];
    for (int i = 1; i < kThreads / 32; ++i)
        m = fmaxf(m, shared[i]);
    return m;
}

template <typename T>
__global__ void toFloatKernel(const T* src, float* dst, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        dst[i] = loadAsFloat(src, i);
}

__global__ void toHalfKernel(const float* src, __half* dst, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}
__global__ void toBf16Kernel(const float* src, __nv_bfloat16* dst, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void floatToDoubleKernel(const float* src, double* dst, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        dst[i] = static_cast<double>(src[i]);
}
__global__ void doubleToFloatKernel(const double* src, float* dst, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        dst[i] = static_cast<float>(src[i]);
}

__global__ void rmsNormRowsKernel(const float* x, const float* w, float eps, float* out, std::int64_t cols)
{
    __shared__ float shared[kThreads / 32];
    const float* row = x + blockIdx.x * cols;
    float* o = out + blockIdx.x * cols;
    float s = 0.0f;
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        s += row[c] * row[c];
    s = blockSum(s, shared);
    const float scale = 1.0f / sqrtf(s / static_cast<float>(cols) + eps);
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        o[c] = (row[c] * scale) * w[c];
}

// One warp per (row, block).
__global__ void rmsNormBlocksKernel(float* x, const float* w, float eps, std::int64_t blocks, std::int64_t cols,
                                    std::int64_t width, std::int64_t total)
{
    const std::int64_t item = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (item >= total)
        return;
    const std::int64_t r = item / blocks, b = item % blocks;
    float* p = x + r * cols + b * width;
    float s = 0.0f;
    for (std::int64_t i = lane; i < width; i += 32)
        s += p[i] * p[i];
    s = warpSum(s);
    const float scale = 1.0f / sqrtf(s / static_cast<float>(width) + eps);
    for (std::int64_t i = lane; i < width; i += 32)
        p[i] = (p[i] * scale) * w[i];
}

__global__ void addBiasKernel(float* x, const float* bias, std::int64_t n, std::int64_t cols)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        x[i] += bias[i % cols];
}

__global__ void addResidualKernel(float* h, const float* y, const float* bias, std::int64_t n, std::int64_t cols)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        h[i] += bias ? y[i] + bias[i % cols] : y[i];
}

__global__ void swiGluKernel(float* gate, const float* up, std::int64_t n)
{
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const float v = gate[i];
        gate[i] = v / (1.0f + expf(-v)) * up[i];
    }
}

constexpr int kStatRows = 64;

__global__ void pairStatisticsKernel(const float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim,
                                     double* norms, double* moments)
{
    const std::int64_t pairs = headDim / 2;
    const std::int64_t column = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; // h * pairs + j
    if (column >= heads * pairs)
        return;
    const std::int64_t h = column / pairs, j = column % pairs;
    const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * kStatRows;
    const std::int64_t r1 = r0 + kStatRows < rows ? r0 + kStatRows : rows;
    const std::int64_t width = heads * headDim;
    double n = 0.0, aa = 0.0, bb = 0.0, ab = 0.0;
    for (std::int64_t r = r0; r < r1; ++r) {
        const double a = x[r * width + h * headDim + j];
        const double b = x[r * width + h * headDim + j + pairs];
        n += sqrt(a * a + b * b);
        aa += a * a;
        bb += b * b;
        ab += a * b;
    }
    atomicAdd(norms + column, n);
    atomicAdd(moments + h * 3 * pairs + 3 * j, aa);
    atomicAdd(moments + h * 3 * pairs + 3 * j + 1, bb);
    atomicAdd(moments + h * 3 * pairs + 3 * j + 2, ab);
}

__global__ void rotateKernel(float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim, std::int64_t group,
                             const int* pairIndex, const float* freqs, std::int64_t pairCount, const int* positions,
                             std::int64_t firstPosition)
{
    const std::int64_t total = rows * heads * pairCount;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t p = i % pairCount;
        const std::int64_t h = (i / pairCount) % heads;
        const std::int64_t r = i / (pairCount * heads);
        const std::int64_t kv = h / group;
        const std::int64_t position = positions ? positions[r] : firstPosition + r;
        const float angle = static_cast<float>(position) * freqs[kv * pairCount + p];
        const float cs = cosf(angle);
        const float sn = sinf(angle);
        float* head = x + r * heads * headDim + h * headDim;
        const int j = pairIndex[kv * pairCount + p];
        const float a0 = head[j];
        const float b0 = head[j + headDim / 2];
        head[j] = a0 * cs - b0 * sn;
        head[j + headDim / 2] = a0 * sn + b0 * cs;
    }
}

__global__ void splitHeadsKernel(const float* x, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d,
                                 float* out)
{
    const std::int64_t total = count * heads * d;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t e = i % d;
        const std::int64_t t = (i / d) % count;
        const std::int64_t h = i / (d * count);
        out[i] = x[(t0 + t) * heads * d + h * d + e];
    }
}

__global__ void mergeHeadsKernel(const float* in, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d,
                                 float* x)
{
    const std::int64_t total = count * heads * d;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t e = i % d;
        const std::int64_t t = (i / d) % count;
        const std::int64_t h = i / (d * count);
        x[(t0 + t) * heads * d + h * d + e] = in[i];
    }
}

__global__ void maskedSoftmaxKernel(float* scores, std::int64_t rowsPerBlock, std::int64_t n, std::int64_t firstPosition,
                                    std::int64_t window, float scale)
{
    __shared__ float shared[kThreads / 32];
    float* row = scores + static_cast<std::int64_t>(blockIdx.x) * n;
    const std::int64_t position = firstPosition + static_cast<std::int64_t>(blockIdx.x) % rowsPerBlock;
    const std::int64_t end = position + 1 < n ? position + 1 : n;
    const std::int64_t begin = window > 0 && end - window > 0 ? end - window : 0;
    float m = -INFINITY;
    for (std::int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
        m = fmaxf(m, row[j] * scale);
    m = blockMax(m, shared);
    float s = 0.0f;
    for (std::int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
        const float e = expf(row[j] * scale - m);
        row[j] = e;
        s += e;
    }
    s = blockSum(s, shared);
    const float inv = 1.0f / s;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x)
        row[j] = (j >= begin && j < end) ? row[j] * inv : 0.0f;
}

constexpr int kMaxGemvTokens = 8;

// One warp per weight row, 8 consecutive elements per lane per step (16-byte loads for 16-bit types).
template <typename T>
__global__ void gemvKernel(const T* w, std::int64_t rows, std::int64_t cols, const float* x, int tokens, float* y)
{
    const std::int64_t r = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    float acc[kMaxGemvTokens];
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t)
        acc[t] = 0.0f;
    const T* wr = w + r * cols;
    const std::int64_t vectorCols = (cols / (32 * 8)) * (32 * 8);
    for (std::int64_t c0 = lane * 8; c0 < vectorCols; c0 += 32 * 8) {
        float wv[8];
#pragma unroll
        for (int e = 0; e < 8; ++e)
            wv[e] = loadAsFloat(wr, c0 + e);
#pragma unroll
        for (int t = 0; t < kMaxGemvTokens; ++t) {
            if (t < tokens) {
                const float* xt = x + t * cols + c0;
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    acc[t] += wv[e] * xt[e];
            }
        }
    }
    for (std::int64_t c = vectorCols + lane; c < cols; c += 32) {
        const float wv = loadAsFloat(wr, c);
        for (int t = 0; t < tokens; ++t)
            acc[t] += wv * x[t * cols + c];
    }
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t) {
        if (t < tokens) {
            const float v = warpSum(acc[t]);
            if (lane == 0)
                y[t * rows + r] = v;
        }
    }
}

__global__ void reverseLastColumnsKernel(const double* src, std::int64_t n, std::int64_t k, double* dst)
{
    const std::int64_t total = n * k;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t row = i % n, c = i / n;
        dst[i] = src[row + (n - 1 - c) * n];
    }
}

void checkLaunch(const char* what)
{
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw mla::Error(std::string("CUDA error launching ") + what + ": " + cudaGetErrorString(e));
}

} // namespace

void toFloat(int dtype, const void* src, float* dst, std::int64_t n, cudaStream_t stream)
{
    if (n <= 0)
        return;
    const unsigned blocks = blocksFor(n) > 65535u * 4 ? 65535u * 4 : blocksFor(n);
    if (dtype == 0)
        cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    else if (dtype == 1)
        toFloatKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(src), dst, n);
    else
        toFloatKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), dst, n);
    checkLaunch("toFloat");
}

void fromFloat(int dtype, const float* src, void* dst, std::int64_t n, cudaStream_t stream)
{
    if (n <= 0)
        return;
    const unsigned blocks = blocksFor(n) > 65535u * 4 ? 65535u * 4 : blocksFor(n);
    if (dtype == 0)
        cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    else if (dtype == 1)
        toHalfKernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
    else
        toBf16Kernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
    checkLaunch("fromFloat");
}

void floatToDouble(const float* src, double* dst, std::int64_t n, cudaStream_t stream)
{
    if (n <= 0)
        return;
    const unsigned blocks = blocksFor(n) > 65535u * 4 ? 65535u * 4 : blocksFor(n);
    floatToDoubleKernel<<<blocks, kThreads, 0, stream>>>(src, dst, n);
    checkLaunch("floatToDouble");
}

void doubleToFloat(const double* src, float* dst, std::int64_t n, cudaStream_t stream)
{
    if (n <= 0)
        return;
    const unsigned blocks = blocksFor(n) > 65535u * 4 ? 65535u * 4 : blocksFor(n);
    doubleToFloatKernel<<<blocks, kThreads, 0, stream>>>(src, dst, n);
    checkLaunch("doubleToFloat");
}

void rmsNormRows(const float* x, const float* w, float eps, float* out, std::int64_t rows, std::int64_t cols, cudaStream_t stream)
{
    if (rows <= 0)
        return;
    rmsNormRowsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, w, eps, out, cols);
    checkLaunch("rmsNormRows");
}

void rmsNormBlocks(float* x, const float* w, float eps, std::int64_t rows, std::int64_t cols, std::int64_t width,
                   cudaStream_t stream)
{
    const std::int64_t blocks = cols / width;
    const std::int64_t total = rows * blocks;
    if (total <= 0)
        return;
    rmsNormBlocksKernel<<<blocksFor(total * 32), kThreads, 0, stream>>>(x, w, eps, blocks, cols, width, total);
    checkLaunch("rmsNormBlocks");
}

void addBias(float* x, const float* bias, std::int64_t rows, std::int64_t cols, cudaStream_t stream)
{
    if (!bias || rows * cols <= 0)
        return;
    const unsigned blocks = blocksFor(rows * cols) > 65535u * 4 ? 65535u * 4 : blocksFor(rows * cols);
    addBiasKernel<<<blocks, kThreads, 0, stream>>>(x, bias, rows * cols, cols);
    checkLaunch("addBias");
}

void addResidual(float* h, const float* y, const float* bias, std::int64_t rows, std::int64_t cols, cudaStream_t stream)
{
    if (rows * cols <= 0)
        return;
    const unsigned blocks = blocksFor(rows * cols) > 65535u * 4 ? 65535u * 4 : blocksFor(rows * cols);
    addResidualKernel<<<blocks, kThreads, 0, stream>>>(h, y, bias, rows * cols, cols);
    checkLaunch("addResidual");
}

void swiGlu(float* gate, const float* up, std::int64_t n, cudaStream_t stream)
{
    if (n <= 0)
        return;
    const unsigned blocks = blocksFor(n) > 65535u * 4 ? 65535u * 4 : blocksFor(n);
    swiGluKernel<<<blocks, kThreads, 0, stream>>>(gate, up, n);
    checkLaunch("swiGlu");
}

void pairStatistics(const float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim, double* norms,
                    double* moments, cudaStream_t stream)
{
    if (rows <= 0)
        return;
    const std::int64_t columns = heads * (headDim / 2);
    dim3 grid(blocksFor(columns, 128), static_cast<unsigned>((rows + kStatRows - 1) / kStatRows));
    pairStatisticsKernel<<<grid, 128, 0, stream>>>(x, rows, heads, headDim, norms, moments);
    checkLaunch("pairStatistics");
}

void rotate(float* x, std::int64_t rows, std::int64_t heads, std::int64_t headDim, std::int64_t group, const int* pairIndex,
            const float* freqs, std::int64_t pairCount, const int* positions, std::int64_t firstPosition, cudaStream_t stream)
{
    const std::int64_t total = rows * heads * pairCount;
    if (total <= 0)
        return;
    const unsigned blocks = blocksFor(total) > 65535u * 4 ? 65535u * 4 : blocksFor(total);
    rotateKernel<<<blocks, kThreads, 0, stream>>>(x, rows, heads, headDim, group, pairIndex, freqs, pairCount, positions,
                                                   firstPosition);
    checkLaunch("rotate");
}

void splitHeads(const float* x, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d, float* out,
                cudaStream_t stream)
{
    const std::int64_t total = count * heads * d;
    if (total <= 0)
        return;
    const unsigned blocks = blocksFor(total) > 65535u * 4 ? 65535u * 4 : blocksFor(total);
    splitHeadsKernel<<<blocks, kThreads, 0, stream>>>(x, t0, count, heads, d, out);
    checkLaunch("splitHeads");
}

void mergeHeads(const float* in, std::int64_t t0, std::int64_t count, std::int64_t heads, std::int64_t d, float* x,
                cudaStream_t stream)
{
    const std::int64_t total = count * heads * d;
    if (total <= 0)
        return;
    const unsigned blocks = blocksFor(total) > 65535u * 4 ? 65535u * 4 : blocksFor(total);
    mergeHeadsKernel<<<blocks, kThreads, 0, stream>>>(in, t0, count, heads, d, x);
    checkLaunch("mergeHeads");
}

void maskedSoftmax(float* scores, std::int64_t rows, std::int64_t rowsPerBlock, std::int64_t n, std::int64_t firstPosition,
                   std::int64_t window, float scale, cudaStream_t stream)
{
    if (rows <= 0)
        return;
    maskedSoftmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(scores, rowsPerBlock, n, firstPosition, window, scale);
    checkLaunch("maskedSoftmax");
}

void gemvRows(int dtype, const void* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t tokens, float* y,
              cudaStream_t stream)
{
    if (rows <= 0 || tokens <= 0)
        return;
    if (tokens > kMaxGemvTokens)
        throw mla::Error("internal: gemvRows with more than 8 tokens");
    const unsigned blocks = blocksFor(rows * 32);
    if (dtype == 0)
        gemvKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(w), rows, cols, x, static_cast<int>(tokens), y);
    else if (dtype == 1)
        gemvKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(w), rows, cols, x, static_cast<int>(tokens), y);
    else
        gemvKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(w), rows, cols, x, static_cast<int>(tokens), y);
    checkLaunch("gemvRows");
}

void reverseLastColumns(const double* src, std::int64_t n, std::int64_t k, double* dst, cudaStream_t stream)
{
    if (n * k <= 0)
        return;
    const unsigned blocks = blocksFor(n * k) > 65535u * 4 ? 65535u * 4 : blocksFor(n * k);
    reverseLastColumnsKernel<<<blocks, kThreads, 0, stream>>>(src, n, k, dst);
    checkLaunch("reverseLastColumns");
}

} // namespace mla::cuda::kernels
