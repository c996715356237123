#include "jobs/analysis_job.h"

namespace mla {

void AnalysisJob::start(const LoadedModel& model, const AnalysisOptions& options)
{
    run<AnalysisPtr>(
        tr("Analysing"),
        [model, options](const ExecutionContext& ctx) -> AnalysisPtr {
            return std::make_shared<const AnalysisResult>(analyzeModel(ctx.backend(), *model.model, model.tokenizer.get(), options, ctx.job()));
        },
        [this](AnalysisPtr&& a) { Q_EMIT analysed(a); });
}

void ReselectJob::start(const AnalysisPtr& analysis, const std::shared_ptr<const Model>& model, const ConversionSettings& settings)
{
    run<AnalysisPtr>(
        tr("Updating spectra"),
        [analysis, model, settings](const ExecutionContext& ctx) -> AnalysisPtr {
            auto copy = std::make_shared<AnalysisResult>(*analysis);
            reselect(ctx.backend(), *copy, *model, settings, 1e-6, ctx.job());
            return copy;
        },
        [this](AnalysisPtr&& a) { Q_EMIT reselected(a); });
}

} // namespace mla
