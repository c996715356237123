#include "cli_common.h"
#include "commands.h"
#include "pipeline/export_gguf.h"
#include "util/error.h"

#include <chrono>
#include <iostream>

namespace mla::cli {
namespace {

int runExport(const Arguments& args)
{
    const auto out = args.value("out");
    if (!out)
        throw UsageError{"--out FILE is required"};
    const std::string format = args.valueOr("format", "gguf");
    if (format != "gguf")
        throw UsageError{"--format must be gguf"};
    GgufExportOptions options;
    options.file = *out;
    if (auto dtype = args.value("dtype")) {
        options.weights = ggmlTypeFromUserName(*dtype);
        if (!options.weights)
            throw UsageError{"--dtype must be " + std::string(ggmlTypeUserNames())};
    }
    if (auto tokenizer = args.value("tokenizer"))
        options.tokenizerFile = *tokenizer;
    options.name = args.valueOr("name", "");
    options.overwrite = args.has("force");

    const auto started = std::chrono::steady_clock::now();
    // Re-encoding the weights is CPU work: the context's backend is the CPU.
    const ExecutionContext context(nullptr, terminalProgress(args));
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext());
    const GgufExportReport report = pipeline::exportGguf(opened, options, context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (args.has("json")) {
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
        j["seconds"] = seconds;
        printJson(j);
        return 0;
    }
    std::cout << "wrote " << report.file.string() << ": GGUF, llama.cpp architecture " << report.architecture << ", "
              << report.tensors << " tensors in " << ggmlTypeTraits(report.weights).name << ", " << report.bytesWritten
              << " bytes, tokenizer " << report.tokenizer << "\n";
    if (!report.keptInF16.empty())
        std::cout << "  " << report.keptInF16.size() << " matrices whose rows are not whole 32-weight blocks kept in F16\n";
    for (const auto& note : report.notes)
        std::cout << "  note: " << note << "\n";
    std::cout << "run it: llama-cli -m " << report.file.string() << " -p \"Once upon a time\" -n 64 --temp 0\n"
              << "(model card with the node-llama-cpp commands: --json, or the file's mla_workbench.model_card)\n";
    return 0;
}

} // namespace

CommandSpec exportCommand()
{
    return {"export",
            "[MODEL] --format gguf --out FILE.gguf [--dtype f32|f16|bf16|q8_0|q4_0] [--tokenizer F] [--name NAME] "
            "[--force] [--json]",
            "write the model as one GGUF file that llama.cpp runs",
            "Writes an unconverted Llama, Mistral, Qwen2 or Qwen3 model as llama.cpp's own architecture (llama with "
            "its interleaved query/key row order, qwen2, qwen3), with the tokenizer embedded (llama2.c tokenizer.bin "
            "and SentencePiece vocabularies as llama.cpp's \"llama\" tokenizer, a byte-level BPE tokenizer.json as "
            "\"gpt2\" with its merges and pre-tokenizer type, special tokens and the chat template from "
            "tokenizer_config.json). Q8_0 and Q4_0 quantise every matrix whose rows are whole 32-weight blocks, as "
            "llama.cpp's own quantiser does; the others stay F16, norms F32. The file appears only when complete. A "
            "converted (MLA) model cannot be written as GGUF yet (llama.cpp's deepseek2 layout is planned).",
            {demoOption(), tokenizerOption(),
             {"format", "FORMAT", "output format: gguf (the default and only one)"},
             {"out", "FILE", "output file (.gguf)"},
             {"dtype", "TYPE", "weight type: f32, f16, bf16, q8_0 or q4_0 (default: as the input)"},
             {"name", "NAME", "general.name in the file (default: the input's file or folder name)"},
             {"force", nullptr, "replace FILE even when it is not a GGUF file this tool wrote (never an input, never a folder)"},
             {"quiet", nullptr, "no progress output"},
             jsonOption()},
            1, runExport};
}

} // namespace mla::cli
