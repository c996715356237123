#pragma once

#include <filesystem>

namespace mla {

// The directory of the running executable (empty when it cannot be found).
std::filesystem::path executableDir();

// The bundled demo checkpoint (stories260K.bin), wherever the calling binary runs from. Looks in order at
// $MLA_DEMO_DIR, <exe>/../share/mla-workbench/demo (installed or unpacked from the .deb), `installDir` (the install
// prefix the binary was configured with) and `buildDir` (the source tree). Both the CLI and the GUI pass their
// MLA_DEMO_INSTALL_DIR and MLA_DEMO_BUILD_DIR compile definitions. Throws an Error naming every place looked at.
std::filesystem::path findDemoModel(const std::filesystem::path& installDir, const std::filesystem::path& buildDir);

} // namespace mla
