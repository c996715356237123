#include "jobs/gguf_export_job.h"

namespace mla {

void GgufExportJob::start(const OpenedModel& model, const GgufExportOptions& options)
{
    run<GgufExportReport>(
        tr("Exporting GGUF"),
        [model, options](const ExecutionContext& ctx) { return pipeline::exportGguf(model, options, ctx); },
        [this](GgufExportReport&& r) { Q_EMIT exported(r); });
}

void GgufExportJob::start(const OpenedModel& original, const ConversionOutcome& conversion, const GgufExportOptions& options,
                          const std::optional<CheckOutcome>& measured)
{
    run<GgufExportReport>(
        tr("Exporting GGUF"),
        [original, conversion, options, measured](const ExecutionContext& ctx) {
            return pipeline::exportConversionGguf(original, conversion, options, measured, ctx);
        },
        [this](GgufExportReport&& r) { Q_EMIT exported(r); });
}

} // namespace mla
