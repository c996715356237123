#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace mla {

// What this process may still allocate, and where that bound comes from. The smallest of: the kernel's estimate of
// memory available without swapping (MemAvailable), the room left under a cgroup v2 memory limit (containers, CI
// runners, systemd slices) and the room left under RLIMIT_DATA (`ulimit -d`).
struct MemoryAvailability {
    std::uint64_t bytes = 0;
    std::string source; // "MemAvailable", "cgroup memory.max", "RLIMIT_DATA" or "unknown" (then bytes is UINT64_MAX)
};
MemoryAvailability availableMemory();

// "3.2 GiB", "512.0 MiB", "8 bytes".
std::string formatBytes(std::uint64_t bytes);

// Called before an allocation sized by a model (weights copied out of the map, a KV cache, a converted model): throws
// an Error "<file>: <what> needs X GiB of memory, Y GiB available (<source>)" when `bytes` exceeds what is available,
// so a model too large for this machine is refused up front instead of failing halfway or being killed. Weights that
// stay memory-mapped are streamed by the kernel and are never counted here.
void requireMemory(std::uint64_t bytes, const std::string& what, const std::filesystem::path& file = {});

} // namespace mla
