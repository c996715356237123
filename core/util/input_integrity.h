#pragma once

#include <atomic>

namespace mla {

// Set (from the SIGBUS handler of MappedFile) once a memory-mapped input shrank while this process was using it:
// its vanished pages were replaced by zeros so that the process survives, and whatever was computed from them must
// be discarded. Every job checks it at its safe points (JobControl), the CLI once more before it reports success.
extern std::atomic<bool> g_mappedInputDamaged;

// Throws an Error naming the file that changed; does nothing when no mapped input was damaged.
void throwIfMappedInputDamaged();

inline void checkMappedInputs()
{
    if (g_mappedInputDamaged.load(std::memory_order_relaxed))
        throwIfMappedInputDamaged();
}

} // namespace mla
