#pragma once

#include "jobs/allocation_job.h"
#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Converts the model in memory, as the CLI's convert does, ready for the sanity check and export: a per-layer budget
// allocation first when asked for and not done yet, then the sequential conversion with refits when the settings
// need a calibration pass (activation-aware, refit, balance choice), else the plain one. Attention tensors are
// stored in the original's dtype (float32 after refits). A cancelled conversion leaves nothing behind.
class ConversionJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const std::shared_ptr<const Model>& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
               const AllocationRequest& allocation);

Q_SIGNALS:
    void converted(const mla::ConversionOutcome& outcome);
};

ConversionOutcome convertInMemory(const ExecutionContext& ctx, const Model& model, const AnalysisResult* analysis,
                                  ConversionSettings settings, const AllocationRequest& allocation);

} // namespace mla
