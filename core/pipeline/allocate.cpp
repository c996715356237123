#include "pipeline/allocate.h"

#include "settings/settings_rules.h"
#include "util/error.h"

#include <cmath>
#include <limits>

namespace mla::pipeline {

Allocation allocate(const Model& model, const AnalysisResult& analysis, const Settings& settings, const ExecutionContext& context,
                    OriginalTrajectory* kept)
{
    const ModelConfig& c = model.config;
    const ConversionSettings& s = settings.conversion;
    CalibrationSet calibration;
    calibration.sequences = analysis.calibrationIds;
    calibration.description = analysis.calibrationDescription;
    AllocationOptions options;
    options.budget = allocationBudget(settings, c);
    options.strategy = s.strategy;
    options.activationAware = s.activationAware;
    options.onlyPairs = s.ropePairs; // fixed by the user: the other counts need no measuring
    auto candidates = measureAllocationCandidates(context.backend(), model, analysis, calibration, options, context.job(), kept);
    if (s.ropePairs >= 0) {
        for (auto& layer : candidates)
            std::erase_if(layer, [&](const AllocationCandidate& a) { return a.pairs != s.ropePairs; });
    }
    if (settings.anyLocked()) {
        const std::vector<std::int64_t> widths = layerLatents(s, c);
        for (std::size_t l = 0; l < candidates.size() && l < settings.lockedLayers.size() && l < widths.size(); ++l) {
            if (!settings.lockedLayers[l] || candidates[l].empty())
                continue;
            // A locked layer keeps its width and pairs: the measured candidate closest to it stands in for its cost.
            const std::int64_t latent = widths[l];
            const std::int64_t pairs = ropePairsForLayer(c, s, static_cast<std::int64_t>(l));
            AllocationCandidate fixed{pairs, latent, c.kvHeads * 2 * pairs + latent, 0.0};
            double distance = std::numeric_limits<double>::infinity();
            for (const AllocationCandidate& a : candidates[l]) {
                const double d = std::abs(static_cast<double>(a.latent - latent)) + 1000.0 * std::abs(static_cast<double>(a.pairs - pairs));
                if (d < distance) {
                    distance = d;
                    fixed.cost = a.cost;
                }
            }
            candidates[l] = {fixed};
        }
    }
    context.job().checkCancelled();
    return allocateBudget(candidates, options.budget);
}

} // namespace mla::pipeline
