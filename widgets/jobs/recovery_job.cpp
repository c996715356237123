#include "jobs/recovery_job.h"

namespace mla {

void RecoveryJob::start(const pipeline::RecoveryRequest& request)
{
    run<pipeline::RecoveryOutcome>(
        tr("Recovering in PyTorch"),
        [request](const ExecutionContext& ctx) { return pipeline::recover(request, ctx); },
        [this, request](pipeline::RecoveryOutcome&& o) {
            Q_EMIT recovered(QString::fromStdString(request.out.string()), o.summary.value("kl_before", 0.0),
                             o.summary.value("kl_after", 0.0), QString::fromStdString(o.summary.dump()));
        });
}

} // namespace mla
