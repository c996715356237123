#pragma once

#include "formats/gguf_export.h"
#include "pipeline/check.h"
#include "pipeline/convert.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"

#include <optional>

namespace mla::pipeline {

// Export as one GGUF file for llama.cpp (CLI `export --format gguf`): an unconverted Llama-family model written as
// llama.cpp's own architecture, a DeepSeek-V2/V3-layout model as its `deepseek2` (formats/gguf_export.h). The
// tokenizer embedded is `options.tokenizerFile`, else the GGUF's own vocabulary, else the tokenizer file next to the
// model. The destination follows the project's output policy with the model's files and the tokenizer file as
// inputs, checked before any work; the file appears only when complete. Nothing here computes on the context's
// backend (the weights are re-encoded on the CPU); progress and cancellation follow the context's JobControl.
GgufExportReport exportGguf(const OpenedModel& model, const GgufExportOptions& options, const ExecutionContext& context);

// Export a conversion made in memory (the workbench's Export with GGUF chosen) as llama.cpp's `deepseek2`
// architecture: only the deepseek-v3 target has a llama.cpp architecture (the mha2mla layout is refused, saying so).
// The original's tokenizer is embedded (as for exportGguf of the original); the conversion settings go under
// mla_workbench.*; `measured` (a check of this conversion in memory, before the weights are re-encoded) goes into the
// model card and mla_workbench.quality.*.
GgufExportReport exportConversionGguf(const OpenedModel& original, const ConversionOutcome& conversion,
                                      const GgufExportOptions& options, const std::optional<CheckOutcome>& measured,
                                      const ExecutionContext& context);

// Convert to one GGUF file (CLI `convert --target deepseek-v3 --format gguf --out FILE.gguf`): the settings, the
// destination and the tokenizer are checked before any work; then convertInMemory, the check when asked (in memory,
// its numbers go into the file), and exportConversionGguf.
struct GgufConversionOutcome {
    ConversionOutcome conversion;
    GgufExportReport written;
    std::optional<CheckOutcome> check;
};
GgufConversionOutcome convertToGguf(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                    const GgufExportOptions& options, const std::optional<CheckOptions>& check,
                                    const ExecutionContext& context);

} // namespace mla::pipeline
