#include "tensor/kernels.h"

#include "util/error.h"
#include "util/half.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <cpuid.h>
#include <omp.h>

namespace mla {
namespace detail {
namespace {

void toFloatF32(const void* src, float* dst, std::size_t n)
{
    std::memcpy(dst, src, n * sizeof(float));
}
void toFloatF16(const void* src, float* dst, std::size_t n)
{
    const auto* s = static_cast<const std::uint16_t*>(src);
    for (std::size_t i = 0; i < n; ++i)
        dst[i] = f16ToFloat(s[i]);
}
void toFloatBF16(const void* src, float* dst, std::size_t n)
{
    const auto* s = static_cast<const std::uint16_t*>(src);
    for (std::size_t i = 0; i < n; ++i)
        dst[i] = bf16ToFloat(s[i]);
}

template <typename Convert>
void dotRowsGeneric(const void* rows, std::size_t cols, std::size_t rowCount, const float* x, float* out,
                    std::size_t elementBytes, Convert convert)
{
    const auto* base = static_cast<const std::uint8_t*>(rows);
    for (std::size_t r = 0; r < rowCount; ++r) {
        const std::uint8_t* row = base + r * cols * elementBytes;
        float acc = 0.0f;
        for (std::size_t c = 0; c < cols; ++c)
            acc += convert(row, c) * x[c];
        out[r] = acc;
    }
}

void dotRowsF32(const void* rows, std::size_t cols, std::size_t n, const float* x, float* out)
{
    dotRowsGeneric(rows, cols, n, x, out, 4, [](const std::uint8_t* row, std::size_t c) {
        float v;
        std::memcpy(&v, row + 4 * c, 4);
        return v;
    });
}
void dotRowsF16(const void* rows, std::size_t cols, std::size_t n, const float* x, float* out)
{
    dotRowsGeneric(rows, cols, n, x, out, 2, [](const std::uint8_t* row, std::size_t c) {
        std::uint16_t v;
        std::memcpy(&v, row + 2 * c, 2);
        return f16ToFloat(v);
    });
}
void dotRowsBF16(const void* rows, std::size_t cols, std::size_t n, const float* x, float* out)
{
    dotRowsGeneric(rows, cols, n, x, out, 2, [](const std::uint8_t* row, std::size_t c) {
        std::uint16_t v;
        std::memcpy(&v, row + 2 * c, 2);
        return bf16ToFloat(v);
    });
}
double sumGeneric(const float* data, std::size_t n)
{
    double acc = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        acc += data[i];
    return acc;
}

// CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c").
bool cpuHasF16c()
{
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

} // namespace

const KernelTable& genericKernels()
{
    static const KernelTable table{{toFloatF32, toFloatF16, toFloatBF16}, {dotRowsF32, dotRowsF16, dotRowsBF16},
                                    {nullptr, nullptr, nullptr}, {nullptr, nullptr, nullptr}, sumGeneric};
    return table;
}

const KernelTable& activeKernels()
{
    static const KernelTable* table = [] {
        __builtin_cpu_init();
        const KernelTable* avx2 = avx2Kernels();
        if (avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuHasF16c())
            return avx2;
        return &genericKernels();
    }();
    return *table;
}

} // namespace detail

const char* kernelInstructionSet()
{
    return &detail::activeKernels() == &detail::genericKernels() ? "generic" : "avx2+fma+f16c";
}

void convertToFloat(DType dtype, const void* src, float* dst, std::size_t count)
{
    detail::activeKernels().toFloat[static_cast<int>(dtype)](src, dst, count);
}

void matvec(const Tensor& W, const float* x, float* y)
{
    const std::int64_t rows = W.rows();
    const std::size_t cols = static_cast<std::size_t>(W.cols());
    const auto dotRows = detail::activeKernels().dotRows[static_cast<int>(W.dtype())];
    const std::size_t rowBytes = cols * dtypeSize(W.dtype());
    const auto* base = static_cast<const std::uint8_t*>(W.data());
    // One contiguous range of rows per thread (a multiple of 16 rows), so each thread streams its own part of the
    // matrix in one call; small matrices stay on one thread because waking the team costs more than the work.
    const bool parallel = static_cast<std::size_t>(rows) * rowBytes > (1u << 16);
#pragma omp parallel if (parallel)
    {
        constexpr std::int64_t kAlign = 16;
        const std::int64_t threads = omp_get_num_threads();
        const std::int64_t share = (rows + threads - 1) / threads;
        const std::int64_t chunk = (share + kAlign - 1) / kAlign * kAlign;
        const std::int64_t first = std::min<std::int64_t>(rows, omp_get_thread_num() * chunk);
        const std::int64_t count = std::min(chunk, rows - first);
        if (count > 0)
            dotRows(base + static_cast<std::size_t>(first) * rowBytes, cols, static_cast<std::size_t>(count), x,
                    y + first);
    }
}

namespace {

// What X W^T of every kind shares: the shapes checked, Y sized, and one row done as a matvec (true when it was).
bool weightProductIsOneRow(const Tensor& W, const MatrixRM& X, MatrixRM& Y)
{
    if (X.cols() != W.cols())
        throw Error("internal: matmul of [" + std::to_string(X.rows()) + ", " + std::to_string(X.cols())
                    + "] by a weight " + shapeString(W.shape()));
    Y.resize(X.rows(), W.rows());
    if (X.rows() != 1)
        return false;
    matvec(W, X.data(), Y.data());
    return true;
}

} // namespace

void matvecRows(const Tensor& W, const MatrixRM& X, MatrixRM& Y)
{
    if (weightProductIsOneRow(W, X, Y))
        return;
    const std::int64_t rows = W.rows();
    const std::size_t cols = static_cast<std::size_t>(W.cols());
    const auto dotRows = detail::activeKernels().dotRows[static_cast<int>(W.dtype())];
    const std::size_t rowBytes = cols * dtypeSize(W.dtype());
    const auto* base = static_cast<const std::uint8_t*>(W.data());
    const std::int64_t n = X.rows();
    const bool parallel = static_cast<std::size_t>(rows) * rowBytes * static_cast<std::size_t>(n) > (1u << 16);
    // The multi-token kernel works on float32 copies of the rows; with half-precision rows whose length is not a
    // multiple of 8 the matvec kernel's scalar tail is compiled differently (multiply and add not fused), so those
    // take the per-token path below.
    const auto tokens = detail::activeKernels().dotRowsTokens[static_cast<int>(W.dtype())];
    if (tokens && (W.dtype() == DType::F32 || cols % 8 == 0)) {
        // One contiguous range of rows per thread (a multiple of 16 rows), so each thread copies the tokens once and
        // streams its rows front to back, fetching ahead.
#pragma omp parallel if (parallel)
        {
            const std::int64_t threads = omp_get_num_threads();
            const std::int64_t share = (rows + threads - 1) / threads;
            const std::int64_t chunk = (share + 15) / 16 * 16;
            const std::int64_t first = std::min<std::int64_t>(rows, omp_get_thread_num() * chunk);
            const std::int64_t count = std::min(chunk, rows - first);
            if (count > 0)
                tokens(base + static_cast<std::size_t>(first) * rowBytes, cols, static_cast<std::size_t>(count),
                       X.data(), cols, static_cast<std::size_t>(n), Y.data() + first, static_cast<std::size_t>(rows));
        }
        return;
    }
    // Blocks of weight rows of about 16 KiB stay in L1 while every token reads them; each output is one call of
    // the matvec kernel on the same rows, so its summation order is the matvec's.
    const std::int64_t blockRows = std::clamp<std::int64_t>(static_cast<std::int64_t>((16u << 10) / std::max<std::size_t>(rowBytes, 1)), 1, 64);
    const std::int64_t blocks = (rows + blockRows - 1) / blockRows;
#pragma omp parallel if (parallel)
    {
        std::vector<float> out(static_cast<std::size_t>(blockRows));
#pragma omp for schedule(static)
        for (std::int64_t b = 0; b < blocks; ++b) {
            const std::int64_t first = b * blockRows;
            const std::int64_t count = std::min(blockRows, rows - first);
            const std::uint8_t* block = base + static_cast<std::size_t>(first) * rowBytes;
            for (std::int64_t t = 0; t < n; ++t) {
                dotRows(block, cols, static_cast<std::size_t>(count), X.row(t).data(), out.data());
                std::copy(out.begin(), out.begin() + count, Y.row(t).data() + first);
            }
        }
    }
}

void matmulTransposed(const Tensor& W, const MatrixRM& X, MatrixRM& Y)
{
    if (weightProductIsOneRow(W, X, Y))
        return;
    const std::int64_t rows = W.rows();
    const std::size_t cols = static_cast<std::size_t>(W.cols());
    if (const auto gemmRows = detail::activeKernels().gemmRows[static_cast<int>(W.dtype())]) {
        // Blocks of 64 rows (four panels of the kernel), spread over the threads; every block sees all tokens.
        constexpr std::int64_t kRows = 64;
        const std::int64_t blocks = (rows + kRows - 1) / kRows;
        const std::size_t rowBytes = cols * dtypeSize(W.dtype());
        const auto* base = static_cast<const std::uint8_t*>(W.data());
        const std::size_t n = static_cast<std::size_t>(X.rows());
#pragma omp parallel for schedule(static)
        for (std::int64_t b = 0; b < blocks; ++b) {
            const std::int64_t first = b * kRows;
            gemmRows(base + static_cast<std::size_t>(first) * rowBytes, cols,
                     static_cast<std::size_t>(std::min(kRows, rows - first)), X.data(), cols, n, Y.data() + first,
                     static_cast<std::size_t>(rows));
        }
        return;
    }
    if (W.dtype() == DType::F32) {
        Eigen::Map<const MatrixRM> w(static_cast<const float*>(W.data()), W.rows(), W.cols());
        Y.noalias() = X * w.transpose();
        return;
    }
    // Half-precision weights: convert a block of rows at a time and multiply with Eigen, one block per thread.
    constexpr std::int64_t kBlock = 128;
    const std::int64_t blocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel
    {
        MatrixRM block;
        MatrixRM part;
#pragma omp for schedule(dynamic)
        for (std::int64_t b = 0; b < blocks; ++b) {
            const std::int64_t first = b * kBlock;
            const std::int64_t count = std::min(kBlock, rows - first);
            block.resize(count, W.cols());
            W.rowsToFloat(first, count, block.data());
            part.noalias() = X * block.transpose();
            Y.middleCols(first, count) = part;
        }
    }
}

double streamingSum(const float* data, std::size_t count)
{
    const auto sum = detail::activeKernels().sum;
    double total = 0.0;
    const int threads = omp_get_max_threads();
    const std::size_t chunk = (count + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int t = 0; t < threads; ++t) {
        const std::size_t first = static_cast<std::size_t>(t) * chunk;
        if (first < count)
            total += sum(data + first, std::min(chunk, count - first));
    }
    return total;
}

} // namespace mla
