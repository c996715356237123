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
            // The probe's forward touches every weight: on a memory-mapped checkpoint of gigabytes that is the whole
            // file read from disk at open (or paged through, for one larger than memory), so big models get no probe
            // and no estimate until a cheaper probe (one layer) exists.
            constexpr std::int64_t kProbeWeightBytes = std::int64_t(1) << 30;
            if (out.model.model && out.model.model->weightBytes() <= kProbeWeightBytes) {
                try {
                    out.probe = pipeline::probeForward(out.model, ctx);
                } catch (const Cancelled&) {
                    throw;
                } catch (const std::exception&) {
                    // No estimate then (the views say so); the model is open all the same.
                }
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
