#include "jobs/export_job.h"

namespace mla {

void ExportJob::start(const OpenedModel& original, const ConversionOutcome& conversion, const QString& folder,
                      const std::optional<CheckOutcome>& measured, bool force)
{
    pipeline::ExportRequest request;
    request.folder = folder.toStdString();
    request.output.force = force;
    run<ExportOutcome>(
        tr("Exporting"),
        [original, conversion, request, measured](const ExecutionContext& ctx) {
            return pipeline::exportConversion(original, conversion, request, measured, ctx);
        },
        [this](ExportOutcome&& o) { Q_EMIT exported(o); });
}

} // namespace mla
