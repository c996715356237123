// Registered only in builds with MLA_WITH_CUDA: the CUDA backend is compiled in, and on a machine without a GPU (CI
// compiles with nvcc but has no device) it degrades to the CPU with a reason instead of failing; with a GPU it
// describes the device. Plain executable: exit 0 on success, 1 on a failure.
#include "backend/compute_backend.h"

#include <cstdio>
#include <string>

using namespace mla;

int main()
{
    int failures = 0;
    auto expect = [&](bool ok, const std::string& what) {
        std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
        failures += ok ? 0 : 1;
    };
    expect(cudaCompiledIn(), "the build includes the CUDA backend");
    std::string why;
    const auto cuda = cudaBackend(0, &why);
    if (!cuda) {
        std::printf("      no usable GPU here: %s\n", why.c_str());
        expect(!why.empty() && why.find("no CUDA support") == std::string::npos, "the reason names the missing device or driver");
        const BackendSelection s = selectBackend("cuda");
        expect(s.backend->name() == "cpu" && s.fellBack, "--device cuda falls back to the CPU");
    } else {
        const ComputeDevice d = cuda->device();
        std::printf("      GPU: %s\n", d.label().c_str());
        expect(cuda->name() == "cuda" && d.gpu && d.memoryBytes > 0, "the GPU is described");
        // One real GPU operation through the backend.
        MatrixRM m = MatrixRM::Identity(8, 8) * 3.0f;
        const auto s = cuda->singularValues(m);
        expect(s.size() == 8 && std::abs(s[0] - 3.0) < 1e-12 && std::abs(s[7] - 3.0) < 1e-12, "a decomposition runs on the GPU");
    }
    return failures == 0 ? 0 : 1;
}
