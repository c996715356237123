#include "util/memory_budget.h"

#include "util/error.h"

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <sys/resource.h>

namespace mla {
namespace {

constexpr std::uint64_t kUnknown = std::numeric_limits<std::uint64_t>::max();

// A "Key:   123 kB" line of a /proc status file, in bytes.
std::uint64_t procKilobytes(const char* file, const std::string& key)
{
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) != 0)
            continue;
        std::istringstream fields(line.substr(key.size() + 1));
        std::uint64_t kb = 0;
        if (fields >> kb)
            return kb * 1024;
    }
    return kUnknown;
}

std::uint64_t fileNumber(const std::filesystem::path& path)
{
    std::ifstream in(path);
    std::string text;
    if (!(in >> text) || text == "max")
        return kUnknown;
    try {
        return std::stoull(text);
    } catch (const std::exception&) {
        return kUnknown;
    }
}

// Room under the cgroup v2 memory limit of this process (the nearest limited ancestor counts too).
std::uint64_t cgroupRoom()
{
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    std::string relative;
    while (std::getline(in, line)) {
        if (line.rfind("0::", 0) == 0)
            relative = line.substr(3);
    }
    if (relative.empty())
        return kUnknown;
    std::uint64_t room = kUnknown;
    for (std::filesystem::path dir = std::filesystem::path("/sys/fs/cgroup") / relative.substr(1);; dir = dir.parent_path()) {
        const std::uint64_t limit = fileNumber(dir / "memory.max");
        const std::uint64_t current = fileNumber(dir / "memory.current");
        if (limit != kUnknown && current != kUnknown)
            room = std::min(room, limit > current ? limit - current : 0);
        if (dir == "/sys/fs/cgroup" || dir == dir.parent_path())
            break;
    }
    return room;
}

// Room under RLIMIT_AS (`ulimit -v`): the whole address space counts, mapped files included.
std::uint64_t addressLimitRoom()
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return kUnknown;
    const std::uint64_t used = procKilobytes("/proc/self/status", "VmSize");
    if (used == kUnknown)
        return static_cast<std::uint64_t>(limit.rlim_cur);
    return limit.rlim_cur > used ? static_cast<std::uint64_t>(limit.rlim_cur) - used : 0;
}

std::uint64_t dataLimitRoom()
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_DATA, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return kUnknown;
    const std::uint64_t used = procKilobytes("/proc/self/status", "VmData");
    if (used == kUnknown)
        return static_cast<std::uint64_t>(limit.rlim_cur);
    return limit.rlim_cur > used ? static_cast<std::uint64_t>(limit.rlim_cur) - used : 0;
}

} // namespace

MemoryAvailability availableMemory()
{
    MemoryAvailability a{kUnknown, "unknown"};
    auto consider = [&](std::uint64_t bytes, const char* source) {
        if (bytes < a.bytes)
            a = {bytes, source};
    };
    consider(procKilobytes("/proc/meminfo", "MemAvailable"), "MemAvailable");
    consider(cgroupRoom(), "cgroup memory.max");
    consider(dataLimitRoom(), "RLIMIT_DATA");
    consider(addressLimitRoom(), "RLIMIT_AS");
    return a;
}

std::string formatBytes(std::uint64_t bytes)
{
    const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024)
        return std::to_string(bytes) + " bytes";
    double value = static_cast<double>(bytes) / 1024.0;
    int unit = 0;
    while (value >= 1024.0 && unit < 4) {
        value /= 1024.0;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
    return text;
}

void requireMemory(std::uint64_t bytes, const std::string& what, const std::filesystem::path& file)
{
    const MemoryAvailability a = availableMemory();
    if (bytes <= a.bytes)
        return;
    const std::string problem = what + " needs " + formatBytes(bytes) + " of memory, " + formatBytes(a.bytes)
                                + " available (" + a.source + ")";
    if (file.empty())
        throw Error(problem);
    throw Error(file, problem);
}

} // namespace mla
