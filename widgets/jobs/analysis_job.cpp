#include "jobs/analysis_job.h"

namespace mla {

void AnalysisJob::start(const LoadedModel& model, const AnalysisOptions& options)
{
    run<AnalysisPtr>(
        tr("Analysing"),
        [model, options](const JobControl& job) -> AnalysisPtr {
            return std::make_shared<const AnalysisResult>(analyzeModel(*model.model, model.tokenizer.get(), options, job));
        },
        [this](AnalysisPtr&& a) { Q_EMIT analysed(a); });
}

void ReselectJob::start(const AnalysisPtr& analysis, const std::shared_ptr<const Model>& model, const ConversionSettings& settings)
{
    run<AnalysisPtr>(
        tr("Updating spectra"),
        [analysis, model, settings](const JobControl& job) -> AnalysisPtr {
            auto copy = std::make_shared<AnalysisResult>(*analysis);
            reselect(*copy, *model, settings, 1e-6, job);
            return copy;
        },
        [this](AnalysisPtr&& a) { Q_EMIT reselected(a); });
}

} // namespace mla
