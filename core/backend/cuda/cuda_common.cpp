#include "backend/cuda/cuda_common.h"

#include "backend/cuda/cuda_kernels.cuh"

#include "util/error.h"

#include <cstdlib>
#include <cstring>

namespace mla::cuda {
namespace {

const char* cublasStatusName(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed (out of GPU memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown status";
    }
}

const char* cusolverStatusName(cusolverStatus_t s)
{
    switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "success";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "allocation failed (out of GPU memory)";
    case CUSOLVER_STATUS_INVALID_VALUE: return "invalid value";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "internal error";
    default: return "unknown status";
    }
}

} // namespace

void check(cudaError_t status, const char* what)
{
    if (status != cudaSuccess) {
        cudaGetLastError(); // clear a sticky-free error so that the next call does not report it again
        throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
    }
}

void check(cublasStatus_t status, const char* what)
{
    if (status != CUBLAS_STATUS_SUCCESS)
        throw Error(std::string("cuBLAS error in ") + what + ": " + cublasStatusName(status));
}

void check(cusolverStatus_t status, const char* what)
{
    if (status != CUSOLVER_STATUS_SUCCESS)
        throw Error(std::string("cuSOLVER error in ") + what + ": " + cusolverStatusName(status));
}

PinnedBuffer::~PinnedBuffer()
{
    if (m_data)
        cudaFreeHost(m_data);
}

void* PinnedBuffer::reserve(std::size_t bytes)
{
    if (bytes <= m_bytes)
        return m_data;
    if (m_data)
        cudaFreeHost(m_data);
    m_data = nullptr;
    m_bytes = 0;
    check(cudaHostAlloc(&m_data, bytes, cudaHostAllocDefault), "cudaHostAlloc");
    m_bytes = bytes;
    return m_data;
}

GemmPrecision gemmPrecisionFromEnvironment()
{
    const char* v = std::getenv("MLA_CUDA_PRECISION");
    if (!v || !*v || std::strcmp(v, "fp32") == 0)
        return GemmPrecision::Float32;
    if (std::strcmp(v, "tf32") == 0)
        return GemmPrecision::TF32;
    if (std::strcmp(v, "native") == 0 || std::strcmp(v, "bf16") == 0)
        return GemmPrecision::Native;
    throw Error(std::string("MLA_CUDA_PRECISION must be fp32, tf32 or native, got '") + v + "'");
}

const char* gemmPrecisionName(GemmPrecision p)
{
    switch (p) {
    case GemmPrecision::Float32: return "fp32";
    case GemmPrecision::TF32: return "tf32";
    case GemmPrecision::Native: return "native";
    }
    return "fp32";
}

Context::~Context()
{
    cudaSetDevice(device); // the handles belong to this GPU, whichever thread destroys them
    if (solver)
        cusolverDnDestroy(solver);
    if (blas)
        cublasDestroy(blas);
    if (compute)
        cudaStreamDestroy(compute);
    if (copy)
        cudaStreamDestroy(copy);
}

void Context::synchronize() const
{
    check(cudaStreamSynchronize(compute), "cudaStreamSynchronize");
}

std::uint64_t Context::freeMemory() const
{
    std::size_t freeBytes = 0, total = 0;
    check(cudaMemGetInfo(&freeBytes, &total), "cudaMemGetInfo");
    return freeBytes;
}

std::vector<ComputeDevice> probeDevices(std::string& whyNot)
{
    std::vector<ComputeDevice> devices;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        whyNot = std::string("no usable CUDA driver or device (") + cudaGetErrorString(e) + ")";
        return devices;
    }
    if (count == 0) {
        whyNot = "no CUDA device found";
        return devices;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        ComputeDevice d;
        d.id = "cuda:" + std::to_string(i);
        d.name = p.name;
        d.memoryBytes = p.totalGlobalMem;
        d.gpu = true;
        devices.push_back(d);
    }
    if (devices.empty())
        whyNot = "no CUDA device could be queried";
    return devices;
}

ContextLock::ContextLock(const Context& ctx) : m_lock(ctx.mutex)
{
    check(cudaSetDevice(ctx.device), "cudaSetDevice");
}

std::unique_ptr<Context> createContext(int device, std::string& whyNot)
{
    std::string probeWhy;
    const std::vector<ComputeDevice> devices = probeDevices(probeWhy);
    if (devices.empty()) {
        whyNot = probeWhy;
        return nullptr;
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
        cudaGetLastError();
        whyNot = "there is no CUDA device " + std::to_string(device) + " (" + std::to_string(count)
                 + (count == 1 ? " device: cuda:0)" : " devices: cuda:0 to cuda:" + std::to_string(count - 1) + ")");
        return nullptr;
    }
    auto ctx = std::make_unique<Context>();
    try {
        ctx->device = device;
        check(cudaSetDevice(device), "cudaSetDevice");
        check(cudaGetDeviceProperties(&ctx->properties, device), "cudaGetDeviceProperties");
        if (ctx->properties.major < 7)
            throw Error(std::string(ctx->properties.name) + " has compute capability " + std::to_string(ctx->properties.major) + "."
                        + std::to_string(ctx->properties.minor) + "; the CUDA backend needs 7.0 or newer");
        check(cudaFree(nullptr), "creating the CUDA context");
        check(cudaStreamCreateWithFlags(&ctx->compute, cudaStreamNonBlocking), "cudaStreamCreate");
        check(cudaStreamCreateWithFlags(&ctx->copy, cudaStreamNonBlocking), "cudaStreamCreate");
        check(cublasCreate(&ctx->blas), "cublasCreate");
        check(cublasSetStream(ctx->blas, ctx->compute), "cublasSetStream");
        check(cusolverDnCreate(&ctx->solver), "cusolverDnCreate");
        check(cusolverDnSetStream(ctx->solver, ctx->compute), "cusolverDnSetStream");
        ctx->precision = gemmPrecisionFromEnvironment();
        // A kernel of this build must run on the device: a missing architecture shows up here, not mid-job.
        DeviceBuffer<float> f(1);
        DeviceBuffer<double> d(1);
        check(cudaMemsetAsync(f.data(), 0, sizeof(float), ctx->compute), "cudaMemset");
        kernels::floatToDouble(f.data(), d.data(), 1, ctx->compute);
        check(cudaStreamSynchronize(ctx->compute), "running a test kernel");
    } catch (const Error& e) {
        whyNot = std::string("the CUDA device could not be used: ") + e.what();
        return nullptr;
    }
    return ctx;
}

void upload(const Context& ctx, void* device, const void* host, std::size_t bytes)
{
    if (bytes == 0)
        return;
    check(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, ctx.compute), "cudaMemcpy (upload)");
    check(cudaStreamSynchronize(ctx.compute), "cudaStreamSynchronize");
}

void download(const Context& ctx, void* host, const void* device, std::size_t bytes)
{
    if (bytes == 0)
        return;
    check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, ctx.compute), "cudaMemcpy (download)");
    check(cudaStreamSynchronize(ctx.compute), "cudaStreamSynchronize");
}

} // namespace mla::cuda
