#pragma once

#include "arguments.h"
#include "heal/heal_options.h"
#include "heal/heal_start.h"

#include <optional>
#include <vector>

namespace mla::cli {

// convert --heal: block-wise distillation after the conversion (core/heal, docs/healing.md).
std::vector<OptionSpec> healOptions();

struct HealFlags {
    HealOptions options;
    std::optional<HealStart> start;   // not given: heal the conversion as asked
};

// Parsed and validated before any work; nullopt without --heal (and then no --heal-* flag may be given).
std::optional<HealFlags> healFlagsFrom(const Arguments& args);

} // namespace mla::cli
