#include "gguf_report.h"

#include "util/error.h"

#include <iostream>

namespace mla::cli {

GgufExportOptions ggufOptionsFrom(const Arguments& args, const std::filesystem::path& out)
{
    GgufExportOptions options;
    options.file = out;
    if (auto dtype = args.value("dtype")) {
        options.weights = ggmlTypeFromUserName(*dtype);
        if (!options.weights)
            throw UsageError{"--dtype must be " + std::string(ggmlTypeUserNames())};
    }
    if (auto tokenizer = args.value("tokenizer"))
        options.tokenizerFile = *tokenizer;
    options.name = args.valueOr("name", "");
    options.overwrite = args.has("force");
    return options;
}

nlohmann::ordered_json ggufReportJson(const GgufExportReport& report)
{
    nlohmann::ordered_json j;
    j["out"] = report.file.string();
    j["format"] = "gguf";
    j["architecture"] = report.architecture;
    j["dtype"] = std::string(ggmlTypeTraits(report.weights).userName);
    j["tensors"] = report.tensors;
    j["kept_in_f16"] = report.keptInF16;
    j["tokenizer"] = report.tokenizer;
    j["bytes_written"] = report.bytesWritten;
    j["notes"] = report.notes;
    j["kv_values_per_token"] = report.kvValuesPerToken;
    j["model_card"] = report.modelCard;
    return j;
}

void printGgufReport(const GgufExportReport& report)
{
    std::cout << "wrote " << report.file.string() << ": GGUF, llama.cpp architecture " << report.architecture << ", "
              << report.tensors << " tensors in " << ggmlTypeTraits(report.weights).name << ", " << report.bytesWritten
              << " bytes, tokenizer " << report.tokenizer << "; llama.cpp caches " << report.kvValuesPerToken
              << " values per token\n";
    if (!report.keptInF16.empty())
        std::cout << "  " << report.keptInF16.size() << " matrices whose rows are not whole 32-weight blocks kept in F16\n";
    for (const auto& note : report.notes)
        std::cout << "  note: " << note << "\n";
    std::cout << "run it: llama-cli -m " << report.file.string() << " -p \"Once upon a time\" -n 64 --temp 0\n"
              << "(model card with the node-llama-cpp commands: --json, or the file's mla_workbench.model_card)\n";
}

} // namespace mla::cli
