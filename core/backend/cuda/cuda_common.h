#pragma once

// Host-side plumbing of the CUDA backend: error checks that turn CUDA / cuBLAS / cuSOLVER failures into mla::Error,
// owning device and pinned buffers, and the one context (device, streams, library handles) every GPU call runs in.
#include "backend/compute_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace mla::cuda {

void check(cudaError_t status, const char* what);
void check(cublasStatus_t status, const char* what);
void check(cusolverStatus_t status, const char* what);

#define MLA_CUDA_CHECK(call) ::mla::cuda::check((call), #call)

// Device memory that grows on demand (contents are not kept when it grows).
template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t count) { resize(count); }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : m_data(o.m_data), m_count(o.m_count) { o.m_data = nullptr; o.m_count = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept
    {
        if (this != &o) {
            release();
            m_data = o.m_data;
            m_count = o.m_count;
            o.m_data = nullptr;
            o.m_count = 0;
        }
        return *this;
    }

    // At least `count` elements; reallocates (losing the contents) when smaller.
    T* reserve(std::size_t count)
    {
        if (count > m_count)
            resize(count);
        return m_data;
    }
    void resize(std::size_t count)
    {
        release();
        if (count > 0) {
            void* p = nullptr;
            check(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc");
            m_data = static_cast<T*>(p);
        }
        m_count = count;
    }
    void release()
    {
        if (m_data)
            cudaFree(m_data);
        m_data = nullptr;
        m_count = 0;
    }
    T* data() const { return m_data; }
    std::size_t size() const { return m_count; }
    std::size_t bytes() const { return m_count * sizeof(T); }

private:
    T* m_data = nullptr;
    std::size_t m_count = 0;
};

// Page-locked host memory (for overlapped uploads).
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    ~PinnedBuffer();
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    void* reserve(std::size_t bytes);
    void* data() const { return m_data; }
    std::size_t bytes() const { return m_bytes; }

private:
    void* m_data = nullptr;
    std::size_t m_bytes = 0;
};

// GEMM precision of the forward pass: FP32 throughout (default, closest to the CPU), TF32 tensor cores on FP32
// data, or the weights' own 16-bit type with activations rounded to it (FP32 accumulation), as PyTorch runs a BF16
// model. Chosen by the environment variable MLA_CUDA_PRECISION = fp32 | tf32 | native.
enum class GemmPrecision { Float32, TF32, Native };
GemmPrecision gemmPrecisionFromEnvironment();
const char* gemmPrecisionName(GemmPrecision p);

// The device, its streams and library handles. One per GPU in use; every use holds `mutex` through a ContextLock,
// which also makes the context's GPU the calling thread's current device (jobs run on pool threads, and the CUDA
// runtime's current device is per thread).
struct Context {
    int device = 0;
    cudaDeviceProp properties{};
    cudaStream_t compute = nullptr;
    cudaStream_t copy = nullptr;
    cublasHandle_t blas = nullptr;
    cusolverDnHandle_t solver = nullptr;
    GemmPrecision precision = GemmPrecision::Float32;
    mutable std::recursive_mutex mutex;

    Context() = default;
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    void synchronize() const;
    std::uint64_t freeMemory() const;
};

// Holds the context's mutex and makes its GPU current on this thread for the scope.
class ContextLock {
public:
    explicit ContextLock(const Context& ctx);
    ContextLock(const ContextLock&) = delete;
    ContextLock& operator=(const ContextLock&) = delete;

private:
    std::lock_guard<std::recursive_mutex> m_lock;
};

// Creates the context on GPU `device`, or returns null with the reason (no driver, no such device, a failing driver).
std::unique_ptr<Context> createContext(int device, std::string& whyNot);
// The usable CUDA devices (empty with the reason when none).
std::vector<ComputeDevice> probeDevices(std::string& whyNot);

// Uploads / downloads (synchronous on the context's compute stream).
void upload(const Context& ctx, void* device, const void* host, std::size_t bytes);
void download(const Context& ctx, void* host, const void* device, std::size_t bytes);

} // namespace mla::cuda
