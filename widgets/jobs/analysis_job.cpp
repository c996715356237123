#include "jobs/analysis_job.h"

namespace mla {

void AnalysisJob::start(const OpenedModel& model, const Settings& settings)
{
    run<AnalysisPtr>(
        tr("Analysing"), [model, settings](const ExecutionContext& ctx) { return pipeline::analyse(model, settings, ctx); },
        [this](AnalysisPtr&& a) { Q_EMIT analysed(a); });
}

void ReselectJob::start(const OpenedModel& model, const AnalysisPtr& analysis, const ConversionSettings& settings)
{
    run<AnalysisPtr>(
        tr("Updating spectra"),
        [model, analysis, settings](const ExecutionContext& ctx) { return pipeline::reselect(model, analysis, settings, ctx); },
        [this](AnalysisPtr&& a) { Q_EMIT reselected(a); });
}

} // namespace mla
