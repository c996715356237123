#pragma once

#include "formats/gguf.h"
#include "formats/gguf_model_card.h"
#include "formats/gguf_quantize.h"
#include "formats/gguf_vocabulary.h"
#include "model/model.h"
#include "util/job_control.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mla {

struct GgufExportOptions {
    std::filesystem::path file;
    // Weight type of the matrices; default: the model's own (F32, F16 or BF16). Norms stay F32. In a quantised
    // export, a matrix whose rows are not whole 32-weight blocks is written in F16 (listed in the report).
    std::optional<GgmlType> weights;
    std::string name; // general.name; default: the source file or folder name
    // Replace an existing file that is not a GGUF file this tool wrote (one it wrote is replaced anyway; never an
    // input, a folder or anything but a regular file: util/output_safety.h).
    bool overwrite = false;
    // Files the job reads besides the model's own and the tokenizer (calibration text, ...): never written over.
    std::vector<std::filesystem::path> otherInputs;
    // The tokenizer to embed; default: the model's own GGUF vocabulary, else the tokenizer file next to the model.
    std::optional<std::filesystem::path> tokenizerFile;
    // More metadata under our own namespace (keys start with "mla_workbench."), e.g. conversion settings and quality.
    std::vector<std::pair<std::string, GgufValue>> extraMetadata;
    // For the model card (stored under mla_workbench.model_card): how the model was converted, the source's KV
    // values per token, and quality measured against the source; empty for an unconverted model.
    std::string conversionSummary;
    std::int64_t sourceKvValuesPerToken = 0;
    std::optional<GgufQuality> quality;
};

struct GgufExportReport {
    std::filesystem::path file;
    std::string architecture; // general.architecture
    GgmlType weights = GgmlType::F32;
    std::uint64_t bytesWritten = 0;
    std::int64_t tensors = 0;
    std::vector<std::string> keptInF16; // quantised exports: matrices whose rows are not whole blocks
    std::string tokenizer;              // where the embedded vocabulary came from
    std::vector<std::string> notes;     // what llama.cpp will do differently, if anything
    std::int64_t kvValuesPerToken = 0;  // what llama.cpp caches per token over all layers
    std::string modelCard;              // Markdown, also in the file under mla_workbench.model_card
};

// The tokenizer an export embeds when none is given: a GGUF model's own vocabulary, else the tokenizer file next to
// the model. Throws an Error naming the model when there is none.
GgufTokenizer defaultGgufTokenizer(const Model& model, const std::optional<std::filesystem::path>& tokenizerFile);

// Writes a model as one GGUF file that llama.cpp runs: an unconverted Llama-family model as architecture `llama`
// (Llama, Mistral) with llama.cpp's interleaved query/key row order, `qwen2` or `qwen3` (half layout, biases, q/k
// norms); a model in the DeepSeek-V2/V3 layout (the deepseek-v3 conversion target) as `deepseek2` with absorbed MLA
// (attn_kv_a_mqa, attn_kv_a_norm, attn_k_b, attn_v_b; dense blocks), which llama.cpp serves with its latent cache.
// Tokenizer embedded, general.* metadata and our own under mla_workbench.*. Staged: the file appears only when
// complete, and the project's output policy applies (the model's files are the job's inputs). A converted model in
// the MHA2MLA layout is refused here: llama.cpp has no architecture for it.
GgufExportReport exportGguf(const Model& model, const GgufExportOptions& options, const JobControl& job = {});

// The checks exportGguf makes of its destination before writing (the output policy with the model's files and the
// tokenizer file as inputs, and the folder existing), for callers with long work to do first.
void requireGgufDestination(const GgufExportOptions& options, const Model& model);

// The GGUF architecture a model is written as ("llama", "qwen2", "qwen3", "deepseek2"), or an Error saying why it
// cannot be.
std::string ggufArchitectureFor(const ModelConfig& config);

} // namespace mla
