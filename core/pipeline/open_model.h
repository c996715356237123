#pragma once

#include "model/model.h"
#include "pipeline/execution_context.h"
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mla::pipeline {

struct OpenRequest {
    std::filesystem::path model;                    // a Hugging Face folder, .safetensors, llama2.c .bin or .gguf
    std::optional<std::filesystem::path> tokenizer; // a tokenizer file asked for by name (CLI --tokenizer)
    bool withTokenizer = true;                      // false: the weights alone (a reference model, a session check)
};

// An open checkpoint with its tokenizer. Shared and immutable, so jobs on other threads can hold it.
struct OpenedModel {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer; // null when there is none (the model still opens)
    std::string tokenizerSource;                // the tokenizer file, "embedded (GGUF)", or empty
    std::vector<std::string> warnings;          // e.g. "ignoring the tokenizer next to the model: FILE: problem"
};

// Opens a checkpoint and its tokenizer: the file asked for, else the GGUF's own vocabulary, else a tokenizer file next
// to the model. A tokenizer next to the model that cannot be read is left out with a warning. A tokenizer with more
// tokens than the model's vocabulary is an error naming the tokenizer's file (or the GGUF that embeds it), wherever
// it came from: its ids would index past the embedding, and an export would ship it beside the converted weights.
OpenedModel openModel(const OpenRequest& request, const ExecutionContext& context);

// The files and folders `model` was read from (checkpoint files, their folder, the tokenizer file), which no output
// may go over or into (util/output_safety.h).
std::vector<std::filesystem::path> inputFiles(const OpenedModel& model);

} // namespace mla::pipeline
