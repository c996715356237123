#include "device_option.h"

#include "backend/compute_backend.h"

#include <iostream>

namespace mla::cli {

OptionSpec deviceOption()
{
    return {"device", "D", "where the work runs: auto (a CUDA GPU when one works, else the CPU; default), cpu or cuda"};
}

void applyDeviceOption(const Arguments& args)
{
    const std::string preference = args.valueOr("device", "auto");
    if (preference != "auto" && preference != "cpu" && preference != "cuda")
        throw UsageError{"--device must be auto, cpu or cuda"};
    const BackendSelection selection = selectBackend(preference);
    setCurrentBackend(selection.backend);
    const bool quiet = args.has("quiet");
    if (selection.fellBack)
        std::cerr << "note: " << selection.message << "\n";
    else if (!quiet && !selection.message.empty() && (selection.backend->isGpu() || args.has("device")))
        std::cerr << "note: " << selection.message << "\n";
}

} // namespace mla::cli
