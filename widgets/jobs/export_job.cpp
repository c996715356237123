#include "jobs/export_job.h"

#include "model/model_files.h"

namespace mla {

void ExportJob::start(const std::shared_ptr<const Model>& original, const std::shared_ptr<const Model>& converted, const QString& folder,
                      bool force)
{
    run<ExportOutcome>(
        tr("Exporting"),
        [original, converted, folder, force](const JobControl& job) {
            ExportOptions options;
            options.folder = folder.toStdString();
            options.output.force = force;
            options.output.inputs = modelInputFiles(*original);
            if (!original->layers.empty() && !original->layers[0].q.empty())
                options.dtype = original->layers[0].q.dtype();
            options.extraFiles = companionFiles(*original);
            ExportOutcome out;
            out.folder = folder;
            out.report = exportModel(*converted, options, job);
            return out;
        },
        [this](ExportOutcome&& o) { Q_EMIT exported(o); });
}

} // namespace mla
