#pragma once

#include "analysis/calibration.h"
#include "engine/transformer.h"
#include "numerics/decompositions.h"

#include <functional>
#include <vector>

namespace mla {

class ComputeBackend;
class OriginalTrajectory;

// What calibration measures in one layer, as sums over tokens (divide by `tokens` for means), in double precision.
// Pair j of a head is dims (j, j + d_h/2) of the pre-RoPE query/key (internal half layout).
struct LayerStatistics {
    std::int64_t tokens = 0;
    MatrixXdRM qPairNorm;   // [heads, pairs]: sum of ||q pair||_2
    MatrixXdRM kPairNorm;   // [kvHeads, pairs]
    MatrixXdRM qPairMoment; // [heads, 3 * pairs]: sums of a^2, b^2, a*b per pair (a = dim j, b = dim j + d_h/2)
    MatrixXdRM kPairMoment; // [kvHeads, 3 * pairs]
    MatrixXdRM inputGram;   // [hidden, hidden]: sum of x x^T of the attention input; empty unless requested
};

struct StatisticsOptions {
    bool inputGram = false; // also accumulate the attention-input second moment (activation-aware work)
};

// Runs the calibration sequences through the model layer by layer (all sequences' hidden states for one layer in
// memory at a time) and hands each layer's statistics to `onLayer` as soon as that layer is done, so big per-layer
// products (the input Gram) never exist for all layers at once. The forward passes run on `backend`. With `keep`,
// the hidden states entering each layer are also offered to it (it keeps what fits under its cap).
//
// With `measured` (one LayerStatistics per layer, already accumulated over exactly these sequences, e.g. while they
// were sampled), no forward pass runs for the statistics: `onLayer` gets them, and layers run only as far as `keep`
// wants their outputs.
void collectLayerStatistics(const ComputeBackend& backend, const Transformer& model, const CalibrationSet& calibration, const StatisticsOptions& options,
                            const std::function<void(std::int64_t layer, LayerStatistics&& stats)>& onLayer,
                            const JobControl& job = {}, OriginalTrajectory* keep = nullptr,
                            std::vector<LayerStatistics>* measured = nullptr);

// Accumulates one layer's statistics from activations (used by collectLayerStatistics; exposed for tests).
void accumulateStatistics(const ModelConfig& config, const LayerActivations& activations, const StatisticsOptions& options,
                          LayerStatistics& stats);
LayerStatistics emptyStatistics(const ModelConfig& config, const StatisticsOptions& options);

// Every layer's statistics accumulated from activations as they come: a sampled calibration's decode steps show each
// layer one new token of every sequence (Transformer::forwardBatch's observer), so the statistics are ready when the
// sampling ends and the analysis needs no second forward pass. The attention inputs are buffered per layer and added
// to the input Gram a block of rows at a time (GEMMs, not rank-one updates). Holds every layer's statistics at once:
// bytes() says how much, for the caller to weigh against the memory available.
class StatisticsAccumulator final : public ForwardObserver {
public:
    StatisticsAccumulator(const ModelConfig& config, const StatisticsOptions& options);
    void onLayer(const LayerActivations& activations) override;
    // The statistics of every layer (the buffered rows added); the accumulator is empty afterwards.
    std::vector<LayerStatistics> take();
    static std::uint64_t bytes(const ModelConfig& config, const StatisticsOptions& options);

private:
    void flush(std::size_t layer);
    ModelConfig m_config;
    StatisticsOptions m_options;
    std::vector<LayerStatistics> m_layers;
    std::vector<MatrixRM> m_pending;          // per layer: attention-input rows not yet in the Gram
    std::vector<Eigen::Index> m_pendingRows;
};

} // namespace mla
