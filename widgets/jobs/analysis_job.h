#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Analyze: calibrates, scores every RoPE pair and computes the key/value spectra (pipeline::analyse).
class AnalysisJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& model, const Settings& settings);

Q_SIGNALS:
    void analysed(const mla::AnalysisPtr& analysis);
};

// Recomputes the selection and spectra of an analysis for new RoPE settings from its stored scores
// (pipeline::reselect), so that the live preview's closed forms are exact again after the kept pairs change.
class ReselectJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& model, const AnalysisPtr& analysis, const ConversionSettings& settings);

Q_SIGNALS:
    void reselected(const mla::AnalysisPtr& analysis);
};

} // namespace mla
