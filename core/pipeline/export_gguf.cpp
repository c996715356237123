#include "pipeline/export_gguf.h"

#include "util/error.h"

namespace mla::pipeline {

GgufExportReport exportGguf(const OpenedModel& model, const GgufExportOptions& options, const ExecutionContext& context)
{
    if (!model.model)
        throw Error("internal: GGUF export of no model");
    // One tokenizer rule (pipeline::openModel): the tokenizer the model was opened with is the one embedded.
    GgufExportOptions resolved = options;
    if (!resolved.tokenizerFile && !model.tokenizerSource.empty() && model.tokenizerSource != "embedded (GGUF)")
        resolved.tokenizerFile = model.tokenizerSource;
    return mla::exportGguf(*model.model, resolved, context.job());
}

} // namespace mla::pipeline
