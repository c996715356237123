#include "jobs/sanity_job.h"

namespace mla {

void SanityJob::start(const OpenedModel& original, const std::shared_ptr<const Model>& converted, const CheckOptions& options)
{
    run<CheckOutcome>(
        tr("Sanity check"),
        [original, converted, options](const ExecutionContext& ctx) { return pipeline::check(original, *converted, options, ctx); },
        [this](CheckOutcome&& r) { Q_EMIT checked(r); });
}

} // namespace mla
