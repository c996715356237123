#pragma once

#include "analysis/analyzer.h"
#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Calibrates, scores every RoPE pair and computes the key/value spectra (core's analyzeModel).
class AnalysisJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const LoadedModel& model, const AnalysisOptions& options);

Q_SIGNALS:
    void analysed(const mla::AnalysisPtr& analysis);
};

// Recomputes the selection and spectra of an analysis for new RoPE settings from its stored scores (core's
// reselect), so that the live preview's closed forms are exact again after the kept pairs change.
class ReselectJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const AnalysisPtr& analysis, const std::shared_ptr<const Model>& model, const ConversionSettings& settings);

Q_SIGNALS:
    void reselected(const mla::AnalysisPtr& analysis);
};

} // namespace mla
