#include "jobs/export_job.h"

namespace mla {

void ExportJob::start(const std::shared_ptr<const Model>& original, const std::shared_ptr<const Model>& converted, const QString& folder)
{
    run<ExportOutcome>(
        tr("Exporting"),
        [original, converted, folder](const ExecutionContext& ctx) {
            ExportOptions options;
            options.folder = folder.toStdString();
            if (!original->layers.empty() && !original->layers[0].q.empty())
                options.dtype = original->layers[0].q.dtype();
            options.extraFiles = companionFiles(*original);
            ExportOutcome out;
            out.folder = folder;
            out.report = exportModel(*converted, options, ctx.job());
            return out;
        },
        [this](ExportOutcome&& o) { Q_EMIT exported(o); });
}

} // namespace mla
