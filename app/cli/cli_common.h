#pragma once

#include "arguments.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"
#include "util/job_control.h"
#include "util/output_safety.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace mla::cli {

// The bundled demo checkpoint (stories260K), wherever this binary runs from: $MLA_DEMO_DIR, next to the binary
// (../share/mla-workbench/demo, as installed or unpacked from the .deb), the install prefix, then the source tree.
std::filesystem::path demoModelPath();

// The model named by positional `index` (the demo when absent or with --demo), with its tokenizer (--tokenizer FILE,
// else the GGUF's own vocabulary, else a tokenizer file next to the model: pipeline::openModel). Warnings go to stderr.
pipeline::OpenedModel openModelArgument(const Arguments& args, const ExecutionContext& context, std::size_t index = 0);
std::filesystem::path modelPathArgument(const Arguments& args, std::size_t index = 0);

// Where this command's output may go: --force, and every input it names or opened (model files, tokenizer,
// calibration and evaluation files) so that no output lands on or in one (util/output_safety.h).
OutputOptions outputOptions(const Arguments& args, const pipeline::OpenedModel* opened = nullptr);

void printJson(const nlohmann::ordered_json& json);

// Progress on stderr ("stage: 42%"), only when stderr is a terminal and --quiet / --json are not given.
JobControl terminalProgress(const Arguments& args);

// Options shared by commands that open a model.
OptionSpec tokenizerOption();
OptionSpec demoOption();
OptionSpec jsonOption();
OptionSpec forceOption(const char* help);

} // namespace mla::cli
