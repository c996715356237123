#include "jobs/model_load_job.h"

#include "util/error.h"

#include <optional>

namespace mla {

void ModelLoadJob::start(const QString& path)
{
    const std::filesystem::path p = path.toStdString();
    struct Loaded {
        OpenedModel model;
        std::optional<pipeline::ForwardProbe> probe;
    };
    run<Loaded>(
        tr("Opening %1").arg(QString::fromStdString(p.filename().string())),
        [p](const ExecutionContext& ctx) {
            Loaded out{pipeline::openModel({p, std::nullopt, true}, ctx), std::nullopt};
            try {
                out.probe = pipeline::probeForward(out.model, ctx);
            } catch (const std::exception&) {
                // No estimate then (the views say so); the model is open all the same.
            }
            return out;
        },
        [this](Loaded&& m) {
            Q_EMIT loaded(m.model);
            if (m.probe)
                Q_EMIT probed(*m.probe);
        });
}

} // namespace mla
