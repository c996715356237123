#include "util/demo_model.h"

#include "util/error.h"

#include <cstdlib>
#include <string>
#include <vector>

namespace mla {

std::filesystem::path executableDir()
{
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::filesystem::path() : exe.parent_path();
}

std::filesystem::path findDemoModel(const std::filesystem::path& installDir, const std::filesystem::path& buildDir)
{
    std::vector<std::filesystem::path> candidates;
    if (const char* env = std::getenv("MLA_DEMO_DIR"))
        candidates.emplace_back(env);
    if (auto dir = executableDir(); !dir.empty())
        candidates.push_back(dir / ".." / "share" / "mla-workbench" / "demo");
    candidates.push_back(installDir);
    candidates.push_back(buildDir);
    for (const auto& c : candidates) {
        std::error_code ec;
        if (!c.empty() && std::filesystem::exists(c / "stories260K.bin", ec))
            return std::filesystem::weakly_canonical(c / "stories260K.bin", ec);
    }
    throw Error("the bundled demo model (stories260K.bin) was not found; looked in $MLA_DEMO_DIR, next to the binary, "
                + installDir.string() + " and " + buildDir.string());
}

} // namespace mla
