#pragma once

#include "pipeline/execution_context.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mla::pipeline {

// Recovery by distillation in PyTorch (CLI `recover`, docs/recovery.md): runs the recipe an export carries,
// `STUDENT/recovery/distill.py` (or the copy built into this program when the folder has none), with a local Python
// that has PyTorch, and reads its progress. The recipe writes the recovered model as an export folder (staged and
// renamed by the recipe itself) with the recovery recorded in README.md and recovery.json.
struct RecoveryRequest {
    std::filesystem::path teacher; // the original: a Hugging Face folder, else any checkpoint this tool opens
    std::filesystem::path student; // an MLA export folder (healed or not)
    std::filesystem::path out;     // where the recovered model goes
    bool force = false;            // replace a non-empty `out` that this tool (or the recipe) wrote
    // The recipe's own options, as `--name value` pairs (a flag without value: empty value), e.g. {"steps", "100"},
    // {"sample", "256"}; names are those of distill.py --help. Checked against recipeOptionNames().
    std::vector<std::pair<std::string, std::string>> recipeOptions;
    std::string python; // the Python to run it with; empty: $MLA_PYTHON, else python3 on PATH
};

struct RecoveryOutcome {
    nlohmann::json summary;            // the recipe's last line: kl_before, kl_after, tokens, out, ppl_*, losses, ...
    std::vector<std::string> command;  // what was run
    std::string torchVersion;          // of the Python that ran it
    bool teacherWrittenFirst = false;  // the teacher was not a Hugging Face folder and was written as one first
    double seconds = 0.0;
};

// The recipe options `recipeOptions` may name, with whether each takes a value.
const std::vector<std::pair<std::string, bool>>& recipeOptionNames();

// The command that runs this recovery with the student's own copy of the recipe, for a bigger machine (the GUI shows
// it; CLI `recover --print-command`). A teacher that is not a Hugging Face folder appears as given, with a note in
// docs/recovery.md on writing it as one (`convert --svd none`).
std::vector<std::string> recoveryCommand(const RecoveryRequest& request);

// Checks everything that can be checked before any work (the folders, the output policy with the teacher and the
// student as inputs, the options, a Python with PyTorch), writes the teacher as a Hugging Face folder first when it
// is another format (the original unchanged: all RoPE pairs, no compression), runs the recipe with progress and
// cancel (a cancel stops the recipe's whole process group and removes its partial output), and returns its summary.
// The recovered folder gets this tool's output marker, so a later run with `force` may replace it.
RecoveryOutcome recover(const RecoveryRequest& request, const ExecutionContext& context);

} // namespace mla::pipeline
