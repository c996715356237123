#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Allocate now: each layer's pairs and latent for the settings' budget, measured on the analysis's calibration, locked
// layers kept (pipeline::allocate, the step a conversion with allocation runs first).
class AllocationJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& model, const AnalysisPtr& analysis, const Settings& settings);

Q_SIGNALS:
    void allocated(const mla::Allocation& allocation);
};

} // namespace mla
