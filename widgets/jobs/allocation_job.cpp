#include "jobs/allocation_job.h"

#include "pipeline/allocate.h"

namespace mla {

void AllocationJob::start(const OpenedModel& model, const AnalysisPtr& analysis, const Settings& settings)
{
    run<Allocation>(
        tr("Allocating the budget"),
        [model, analysis, settings](const ExecutionContext& ctx) { return pipeline::allocate(*model.model, *analysis, settings, ctx); },
        [this](Allocation&& a) { Q_EMIT allocated(a); });
}

} // namespace mla
