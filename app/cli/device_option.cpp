#include "device_option.h"

#include <iostream>

namespace mla::cli {

OptionSpec deviceOption()
{
    return {"device", "D", "where the work runs: auto (a CUDA GPU when one works, else the CPU; default), cpu, cuda or cuda:N (GPU N)"};
}

std::shared_ptr<const ComputeBackend> backendFromDeviceOption(const Arguments& args)
{
    const std::string preference = args.valueOr("device", "auto");
    if (!parseDeviceName(preference))
        throw UsageError{"--device must be auto, cpu, cuda or cuda:N"};
    const BackendSelection selection = selectBackend(preference);
    const bool quiet = args.has("quiet");
    if (selection.fellBack)
        std::cerr << "note: " << selection.message << "\n";
    else if (!quiet && !selection.message.empty() && (selection.backend->isGpu() || args.has("device")))
        std::cerr << "note: " << selection.message << "\n";
    return selection.backend;
}

} // namespace mla::cli
