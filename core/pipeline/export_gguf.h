#pragma once

#include "formats/gguf_export.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"

namespace mla::pipeline {

// Export as one GGUF file for llama.cpp (CLI `export --format gguf`): an unconverted Llama-family model written as
// llama.cpp's own architecture (formats/gguf_export.h). The tokenizer embedded is `options.tokenizerFile`, else the
// GGUF's own vocabulary, else the tokenizer file next to the model. The destination follows the project's output
// policy with the model's files and the tokenizer file as inputs, checked before any work; the file appears only when
// complete. Nothing here computes on the context's backend (the weights are re-encoded on the CPU); progress and
// cancellation follow the context's JobControl.
GgufExportReport exportGguf(const OpenedModel& model, const GgufExportOptions& options, const ExecutionContext& context);

} // namespace mla::pipeline
