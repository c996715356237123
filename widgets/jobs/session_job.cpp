#include "jobs/session_job.h"

namespace mla {

void SessionJob::save(const SessionContent& content, const std::shared_ptr<const Model>& model, const QString& path, bool force)
{
    OutputOptions output;
    output.force = force;
    run<QString>(
        tr("Saving session"),
        [content, model, path, output](const ExecutionContext& ctx) {
            pipeline::saveSession(content, model.get(), path.toStdString(), ctx, output);
            return path;
        },
        [this](QString&& p) { Q_EMIT saved(p); });
}

void SessionJob::load(const QString& path)
{
    run<SessionContent>(
        tr("Opening session"),
        [path](const ExecutionContext& ctx) { return pipeline::sessionContent(pipeline::openSession(path.toStdString(), ctx)); },
        [this, path](SessionContent&& c) { Q_EMIT loaded(path, c); });
}

} // namespace mla
