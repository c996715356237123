#include "jobs/gguf_export_job.h"

#include "util/error.h"

// TEMPORARY (remove when core's exportConversionGguf is merged): core declares it and implements it next; a weak
// reference keeps this branch linking before that, and the job then says the export is not available.
namespace mla::pipeline {
GgufExportReport exportConversionGguf(const OpenedModel& original, const ConversionOutcome& conversion, const GgufExportOptions& options,
                                      const std::optional<CheckOutcome>& measured, const ExecutionContext& context) __attribute__((weak));
}

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
            if (!&pipeline::exportConversionGguf)
                throw Error("this build cannot write a converted model as GGUF yet (core's exportConversionGguf is missing)");
            return pipeline::exportConversionGguf(original, conversion, options, measured, ctx);
        },
        [this](GgufExportReport&& r) { Q_EMIT exported(r); });
}

} // namespace mla
