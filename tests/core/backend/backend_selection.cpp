// Backend selection without a GPU requirement: "cpu" is the CPU, an unknown name is an error, "auto", "cuda" and
// "cuda:N" fall back to the CPU with a message when CUDA is unusable (simulated with MLA_CUDA_DISABLE), the device
// index is honoured (cuda:N is GPU N, a missing GPU is named), and the device list starts with the CPU. Plain
// executable: exit 0 on success, 1 on a failure.
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
    expect(!cpuBackend().isGpu() && cpuBackend().device().id == "cpu", "the CPU backend describes the CPU");

    const BackendSelection cpu = selectBackend("cpu");
    expect(cpu.backend && cpu.backend->name() == "cpu" && cpu.message.empty() && !cpu.fellBack, "'cpu' selects the CPU silently");

    bool threw = false;
    try {
        selectBackend("tpu");
    } catch (const Error& e) {
        threw = contains(e.what(), "auto, cpu, cuda or cuda:N");
    }
    expect(threw, "an unknown device is an error naming the choices");

    // Device names: the GPU index is kept, anything else is refused.
    const auto one = parseDeviceName("cuda:1");
    expect(one && one->kind == DeviceName::Kind::Cuda && one->index == 1, "'cuda:1' names GPU 1");
    const auto twelve = parseDeviceName("cuda:12");
    expect(twelve && twelve->index == 12, "'cuda:12' names GPU 12");
    const auto first = parseDeviceName("cuda");
    expect(first && first->kind == DeviceName::Kind::Cuda && first->index == 0, "'cuda' names GPU 0");
    expect(parseDeviceName("auto") && parseDeviceName("auto")->kind == DeviceName::Kind::Auto, "'auto' parses");
    expect(parseDeviceName("cpu") && parseDeviceName("cpu")->kind == DeviceName::Kind::Cpu, "'cpu' parses");
    for (const char* bad : {"cuda:", "cuda:x", "cuda:-1", "cuda:1x", "gpu", "CUDA", "cuda:123456", ""})
        expect(!parseDeviceName(bad), std::string("'") + bad + "' is not a device name");
    bool threwIndex = false;
    try {
        selectBackend("cuda:x");
    } catch (const Error&) {
        threwIndex = true;
    }
    expect(threwIndex, "'cuda:x' is an error, not the first GPU");

    setenv("MLA_CUDA_DISABLE", "1", 1);
    std::string why;
    expect(cudaBackend(0, &why) == nullptr && contains(why, "MLA_CUDA_DISABLE"), "no CUDA backend while disabled, with the reason");
    const BackendSelection autoNoGpu = selectBackend("auto");
    std::printf("      auto without a GPU: %s\n", autoNoGpu.message.c_str());
    expect(autoNoGpu.backend->name() == "cpu" && contains(autoNoGpu.message, "CPU") && !autoNoGpu.fellBack,
           "'auto' without a usable GPU picks the CPU and says why");
    const BackendSelection cudaNoGpu = selectBackend("cuda");
    std::printf("      cuda without a GPU: %s\n", cudaNoGpu.message.c_str());
    expect(cudaNoGpu.backend->name() == "cpu" && cudaNoGpu.fellBack && contains(cudaNoGpu.message, "not available"),
           "'cuda' without a usable GPU falls back to the CPU with a clear message");
    const BackendSelection secondNoGpu = selectBackend("cuda:1");
    std::printf("      cuda:1 without a GPU: %s\n", secondNoGpu.message.c_str());
    expect(secondNoGpu.backend->name() == "cpu" && secondNoGpu.fellBack && contains(secondNoGpu.message, "CUDA device 1"),
           "'cuda:1' without a usable GPU falls back to the CPU naming device 1");
    expect(listComputeDevices().size() == 1, "the device list holds only the CPU while CUDA is disabled");
    unsetenv("MLA_CUDA_DISABLE");

    const auto devices = listComputeDevices();
    expect(!devices.empty() && devices[0].id == "cpu" && !devices[0].gpu, "the device list starts with the CPU");
    for (const auto& d : devices)
        std::printf("      device %s: %s\n", d.id.c_str(), d.label().c_str());
    const auto cuda = cudaBackend(0, &why);
    const BackendSelection automatic = selectBackend("auto");
    std::printf("      auto: %s (%s)\n", automatic.backend->name().c_str(), automatic.message.c_str());
    if (cuda) {
        expect(automatic.backend == cuda && automatic.backend->isGpu(), "'auto' picks the GPU when one works");
        expect(devices.size() >= 2 && devices[1].gpu && devices[1].memoryBytes > 0 && contains(devices[1].label(), "GiB"),
               "the GPU is listed with its name and memory");
        expect(cuda->device().id == "cuda:0" && selectBackend("cuda:0").backend == cuda, "'cuda:0' is the first GPU");
        // Every listed GPU is the one its id names, and the one after the last is refused with its number.
        const int gpus = static_cast<int>(devices.size()) - 1;
        for (int i = 0; i < gpus; ++i) {
            const BackendSelection s = selectBackend("cuda:" + std::to_string(i));
            expect(s.backend->isGpu() && s.backend->device().id == "cuda:" + std::to_string(i),
                   "'cuda:" + std::to_string(i) + "' computes on GPU " + std::to_string(i));
        }
        std::string whyMissing;
        expect(!cudaBackend(gpus, &whyMissing) && contains(whyMissing, "no CUDA device " + std::to_string(gpus)),
               "a GPU index past the last device is refused, naming it");
        const BackendSelection missing = selectBackend("cuda:" + std::to_string(gpus));
        expect(!missing.backend->isGpu() && missing.fellBack, "selecting a missing GPU falls back to the CPU with a message");
    } else {
        expect(automatic.backend->name() == "cpu" && !automatic.message.empty(), "'auto' picks the CPU, with a message, without a GPU");
        expect(!cudaCompiledIn() || !why.empty(), "the reason CUDA is unusable is given");
    }
    return g_failures == 0 ? 0 : 1;
}
