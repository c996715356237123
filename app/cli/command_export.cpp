#include "cli_common.h"
#include "commands.h"
#include "gguf_report.h"
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
    const GgufExportOptions options = ggufOptionsFrom(args, *out);

    const auto started = std::chrono::steady_clock::now();
    // Re-encoding the weights is CPU work: the context's backend is the CPU.
    const ExecutionContext context(nullptr, terminalProgress(args));
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext());
    const GgufExportReport report = pipeline::exportGguf(opened, options, context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (args.has("json")) {
        nlohmann::ordered_json j = ggufReportJson(report);
        j["seconds"] = seconds;
        printJson(j);
        return 0;
    }
    printGgufReport(report);
    return 0;
}

} // namespace

CommandSpec exportCommand()
{
    return {"export",
            "[MODEL] --format gguf --out FILE.gguf [--dtype f32|f16|bf16|q8_0|q4_0] [--tokenizer F] [--name NAME] "
            "[--force] [--json]",
            "write the model as one GGUF file that llama.cpp runs",
            "Writes a Llama, Mistral, Qwen2 or Qwen3 model as llama.cpp's own architecture (llama with "
            "its interleaved query/key row order, qwen2, qwen3), with the tokenizer embedded (llama2.c tokenizer.bin "
            "and SentencePiece vocabularies as llama.cpp's \"llama\" tokenizer, a byte-level BPE tokenizer.json as "
            "\"gpt2\" with its merges and pre-tokenizer type, special tokens and the chat template from "
            "tokenizer_config.json). Q8_0 and Q4_0 quantise every matrix whose rows are whole 32-weight blocks, as "
            "llama.cpp's own quantiser does; the others stay F16, norms F32. The file appears only when complete. A "
            "model in the DeepSeek-V2/V3 layout (a folder written by convert --target deepseek-v3, or a deepseek2 GGUF) "
            "is written as llama.cpp's deepseek2 with its latent cache; to convert and write GGUF in one step: convert "
            "--target deepseek-v3 --format gguf --out FILE.gguf. The MHA2MLA layout has no llama.cpp architecture.",
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
