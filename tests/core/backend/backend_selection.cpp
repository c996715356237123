// Backend selection without a GPU requirement: "cpu" is the CPU, an unknown name is an error, "auto" and "cuda" fall
// back to the CPU with a message when CUDA is unusable (simulated with MLA_CUDA_DISABLE), the device list starts
// with the CPU, and the current backend defaults to the CPU and is restored by ScopedBackend. Plain executable:
// exit 0 on success, 1 on a failure.
#include "backend/compute_backend.h"
#include "util/error.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mla;

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what)
{
    std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
    if (!ok)
        ++g_failures;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

} // namespace

int main()
{
    expect(currentBackend().name() == "cpu", "the current backend defaults to the CPU");
    expect(!cpuBackend().isGpu() && cpuBackend().device().id == "cpu", "the CPU backend describes the CPU");

    const BackendSelection cpu = selectBackend("cpu");
    expect(cpu.backend && cpu.backend->name() == "cpu" && cpu.message.empty() && !cpu.fellBack, "'cpu' selects the CPU silently");

    bool threw = false;
    try {
        selectBackend("tpu");
    } catch (const Error& e) {
        threw = contains(e.what(), "auto, cpu or cuda");
    }
    expect(threw, "an unknown device is an error naming the choices");

    setenv("MLA_CUDA_DISABLE", "1", 1);
    std::string why;
    expect(cudaBackend(&why) == nullptr && contains(why, "MLA_CUDA_DISABLE"), "no CUDA backend while disabled, with the reason");
    const BackendSelection autoNoGpu = selectBackend("auto");
    std::printf("      auto without a GPU: %s\n", autoNoGpu.message.c_str());
    expect(autoNoGpu.backend->name() == "cpu" && contains(autoNoGpu.message, "CPU") && !autoNoGpu.fellBack,
           "'auto' without a usable GPU picks the CPU and says why");
    const BackendSelection cudaNoGpu = selectBackend("cuda");
    std::printf("      cuda without a GPU: %s\n", cudaNoGpu.message.c_str());
    expect(cudaNoGpu.backend->name() == "cpu" && cudaNoGpu.fellBack && contains(cudaNoGpu.message, "not available"),
           "'cuda' without a usable GPU falls back to the CPU with a clear message");
    expect(listComputeDevices().size() == 1, "the device list holds only the CPU while CUDA is disabled");
    unsetenv("MLA_CUDA_DISABLE");

    const auto devices = listComputeDevices();
    expect(!devices.empty() && devices[0].id == "cpu" && !devices[0].gpu, "the device list starts with the CPU");
    for (const auto& d : devices)
        std::printf("      device %s: %s\n", d.id.c_str(), d.label().c_str());
    const auto cuda = cudaBackend(&why);
    const BackendSelection automatic = selectBackend("auto");
    std::printf("      auto: %s (%s)\n", automatic.backend->name().c_str(), automatic.message.c_str());
    if (cuda) {
        expect(automatic.backend == cuda && automatic.backend->isGpu(), "'auto' picks the GPU when one works");
        expect(devices.size() >= 2 && devices[1].gpu && devices[1].memoryBytes > 0 && contains(devices[1].label(), "GiB"),
               "the GPU is listed with its name and memory");
    } else {
        expect(automatic.backend->name() == "cpu" && !automatic.message.empty(), "'auto' picks the CPU, with a message, without a GPU");
        expect(!cudaCompiledIn() || !why.empty(), "the reason CUDA is unusable is given");
    }

    {
        ScopedBackend scope(automatic.backend);
        expect(&currentBackend() == automatic.backend.get(), "ScopedBackend sets the current backend");
    }
    expect(currentBackend().name() == "cpu", "ScopedBackend restores the previous backend");
    setCurrentBackend(nullptr);
    expect(currentBackend().name() == "cpu", "a null backend restores the CPU");
    return g_failures == 0 ? 0 : 1;
}
