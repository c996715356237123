#pragma once

#include "arguments.h"
#include "formats/gguf_export.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace mla::cli {

// The GGUF options of `export --format gguf` and `convert --format gguf`: --out FILE, --dtype, --tokenizer, --name,
// --force.
GgufExportOptions ggufOptionsFrom(const Arguments& args, const std::filesystem::path& out);

// What a GGUF export wrote, as --json keys (shared by export and convert) and as the lines printed without --json.
nlohmann::ordered_json ggufReportJson(const GgufExportReport& report);
void printGgufReport(const GgufExportReport& report);

} // namespace mla::cli
