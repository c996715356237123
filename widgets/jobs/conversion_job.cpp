#include "jobs/conversion_job.h"

namespace mla {

void ConversionJob::start(const OpenedModel& model, const AnalysisPtr& analysis, const Settings& settings)
{
    run<ConversionOutcome>(
        tr("Converting"),
        [model, analysis, settings](const ExecutionContext& ctx) { return pipeline::convertInMemory(model, analysis, settings, ctx); },
        [this](ConversionOutcome&& o) { Q_EMIT converted(o); });
}

} // namespace mla
