#pragma once

#include "analysis/analysis_result.h"
#include "analysis/calibration.h"
#include "conversion/candidate_errors.h"
#include "model/model.h"
#include "util/job_control.h"

#include <vector>

namespace mla {

class ComputeBackend;
class OriginalTrajectory;

// One way to spend cache in one layer: p kept pairs per KV head and a latent width, with its predicted cost.
struct AllocationCandidate {
    std::int64_t pairs = 0;
    std::int64_t latent = 0;
    std::int64_t elements = 0; // cached elements per token: kvHeads * 2p + latent
    double cost = 0.0;
};

struct Allocation {
    std::vector<std::int64_t> pairs;   // per layer
    std::vector<std::int64_t> latent;  // per layer
    std::vector<double> cost;          // per layer
    double totalCost = 0.0;
    std::int64_t elements = 0;         // total cached elements per token
};

// The per-layer choice minimising the summed cost within `budget` elements per token (a multiple-choice knapsack,
// solved exactly by dynamic programming over the budget). Throws when even the cheapest choices exceed the budget.
Allocation allocateBudget(const std::vector<std::vector<AllocationCandidate>>& candidates, std::int64_t budget);

struct AllocationOptions {
    std::int64_t budget = 0;           // total elements per token
    RopeStrategy strategy = RopeStrategy::RotationLoss; // which pairs a layer keeps for a given count
    bool activationAware = true;
    int latentSteps = 12;              // latent widths measured per pair count
    std::int64_t maxTokens = 4096;     // calibration tokens used for the measurement
    std::int64_t onlyPairs = -1;       // >= 0: measure this pair count only (the user fixed it)
    // The exhaustive measurement: a single-layer model per candidate, full attention over every token (the
    // reference the fast path is tested against; hundreds of times slower).
    bool exhaustive = false;
    // The fast path (LayerCandidateErrors): query rows evaluated (0: all) in how many of the calibration sequences
    // (0: all), output sketch width (0: exact), and the coarse step of the pair counts (0: automatic, about 4
    // coarse counts, 5 of the 33 on a head of 64; 1: every count). Refinement halves the step around the pair counts
    // on the lower convex hull of (elements, cost), the ones a budget can choose. 256 rows in 4 sequences: on the shipped models the same
    // splits as 1024 rows in all 16 on two, within the quality bound on the other two, in 25% less allocation time
    // (docs/benchmarks.md).
    std::int64_t queryRows = 256;
    std::int64_t sequences = 4;
    std::int64_t sketch = 64;
    std::int64_t pairStep = 0;
};

// The fast path's evaluation settings (rows, sequences, sketch) of `options`: also what the sequential conversion's
// key/value balance choice is estimated with.
CandidateErrorOptions candidateErrorOptions(const AllocationOptions& options);

// Measures, layer by layer on the original model's calibration activations, the attention-output error of each
// candidate (pairs, latent): ||O_candidate - O_original||^2 / ||h||^2 with h the residual stream entering the layer,
// so that costs of different layers add up in the same unit. Needs the analysis's RoPE scores. Decompositions run on
// `backend`. The original model's layer inputs come from `kept` where it holds them (see OriginalTrajectory), and
// those computed here are kept there as far as its cap allows, for the sequential conversion that follows.
std::vector<std::vector<AllocationCandidate>> measureAllocationCandidates(const ComputeBackend& backend, const Model& model, const AnalysisResult& analysis,
                                                                          const CalibrationSet& calibration,
                                                                          const AllocationOptions& options,
                                                                          const JobControl& job = {},
                                                                          OriginalTrajectory* kept = nullptr);

} // namespace mla
