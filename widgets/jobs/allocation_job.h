#pragma once

#include "conversion/budget_allocation.h"
#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// What a per-layer allocation is asked for: the total budget (cached elements per token over all layers) and the
// layers the user locked by hand, which keep their latent width (and pair count).
struct AllocationRequest {
    std::int64_t budget = 0;
    std::vector<bool> locked;
    std::vector<std::int64_t> lockedLatent; // per layer; used where locked
    std::vector<std::int64_t> lockedPairs;  // per layer; used where locked
};

// Measures every layer's attention-output error for candidate (pairs, latent) choices on the analysis's calibration
// tokens and picks the per-layer choice with the least total error within the budget (core's
// measureAllocationCandidates + allocateBudget). Locked layers are restricted to their own choice.
Allocation allocatePerLayer(const ExecutionContext& ctx, const Model& model, const AnalysisResult& analysis, const ConversionSettings& settings,
                            const AllocationRequest& request);

class AllocationJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const std::shared_ptr<const Model>& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
               const AllocationRequest& request);

Q_SIGNALS:
    void allocated(const mla::Allocation& allocation);
};

} // namespace mla

Q_DECLARE_METATYPE(mla::Allocation)
