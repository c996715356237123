#include "jobs/model_load_job.h"

namespace mla {

void ModelLoadJob::start(const QString& path)
{
    const std::filesystem::path p = path.toStdString();
    run<OpenedModel>(
        tr("Opening %1").arg(QString::fromStdString(p.filename().string())),
        [p](const ExecutionContext& ctx) { return pipeline::openModel({p, std::nullopt, true}, ctx); },
        [this](OpenedModel&& m) { Q_EMIT loaded(m); });
}

} // namespace mla
