#include "jobs/allocation_job.h"

#include "util/error.h"

#include <cmath>
#include <limits>

namespace mla {

Allocation allocatePerLayer(const ExecutionContext& ctx, const Model& model, const AnalysisResult& analysis,
                            const ConversionSettings& settings, const AllocationRequest& request)
{
    const JobControl& job = ctx.job();
    CalibrationSet calibration;
    calibration.sequences = analysis.calibrationIds;
    calibration.description = analysis.calibrationDescription;
    AllocationOptions options;
    options.budget = request.budget;
    options.strategy = settings.strategy;
    options.activationAware = settings.activationAware;
    auto candidates = measureAllocationCandidates(ctx.backend(), model, analysis, calibration, options, job);
    const std::int64_t kvHeads = model.config.kvHeads;
    for (std::size_t l = 0; l < candidates.size() && l < request.locked.size(); ++l) {
        if (!request.locked[l] || candidates[l].empty())
            continue;
        // A locked layer keeps its width: the measured candidate closest to it stands in for its cost.
        const std::int64_t latent = request.lockedLatent[l];
        const std::int64_t pairs = request.lockedPairs[l];
        const AllocationCandidate* best = nullptr;
        double distance = std::numeric_limits<double>::infinity();
        for (const auto& c : candidates[l]) {
            const double d = std::abs(static_cast<double>(c.latent - latent)) + 1000.0 * std::abs(static_cast<double>(c.pairs - pairs));
            if (d < distance) {
                distance = d;
                best = &c;
            }
        }
        AllocationCandidate fixed = *best;
        fixed.latent = latent;
        fixed.pairs = pairs;
        fixed.elements = kvHeads * 2 * pairs + latent;
        candidates[l] = {fixed};
    }
    job.checkCancelled();
    return allocateBudget(candidates, request.budget);
}

void AllocationJob::start(const std::shared_ptr<const Model>& model, const AnalysisPtr& analysis, const ConversionSettings& settings,
                          const AllocationRequest& request)
{
    run<Allocation>(
        tr("Allocating the budget"),
        [model, analysis, settings, request](const ExecutionContext& ctx) { return allocatePerLayer(ctx, *model, *analysis, settings, request); },
        [this](Allocation&& a) { Q_EMIT allocated(a); });
}

} // namespace mla
