#include "analysis/layer_statistics.h"

#include "analysis/original_trajectory.h"

#include "numerics/gram.h"

#include "backend/compute_backend.h"
#include "util/error.h"

#include <cmath>

namespace mla {
namespace {

void accumulatePairs(const MatrixRM& x, std::int64_t heads, std::int64_t headDim, MatrixXdRM& norms, MatrixXdRM& moments)
{
    const std::int64_t pairs = headDim / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const float* row = x.row(t).data();
        for (std::int64_t h = 0; h < heads; ++h) {
            const float* head = row + h * headDim;
            for (std::int64_t j = 0; j < pairs; ++j) {
                const double a = head[j];
                const double b = head[j + pairs];
                norms(h, j) += std::sqrt(a * a + b * b);
                moments(h, 3 * j) += a * a;
                moments(h, 3 * j + 1) += b * b;
                moments(h, 3 * j + 2) += a * b;
            }
        }
    }
}

} // namespace

LayerStatistics emptyStatistics(const ModelConfig& c, const StatisticsOptions& options)
{
    LayerStatistics s;
    const std::int64_t pairs = c.headDim / 2;
    s.qPairNorm = MatrixXdRM::Zero(c.heads, pairs);
    s.kPairNorm = MatrixXdRM::Zero(c.kvHeads, pairs);
    s.qPairMoment = MatrixXdRM::Zero(c.heads, 3 * pairs);
    s.kPairMoment = MatrixXdRM::Zero(c.kvHeads, 3 * pairs);
    if (options.inputGram)
        s.inputGram = MatrixXdRM::Zero(c.hidden, c.hidden);
    return s;
}

void accumulateStatistics(const ModelConfig& c, const LayerActivations& a, const StatisticsOptions& options, LayerStatistics& s)
{
    if (!a.queries || !a.keys)
        throw Error("internal: calibration needs pre-RoPE queries and keys (run the expanded form)");
    accumulatePairs(*a.queries, c.heads, c.headDim, s.qPairNorm, s.qPairMoment);
    accumulatePairs(*a.keys, c.kvHeads, c.headDim, s.kPairNorm, s.kPairMoment);
    if (options.inputGram) {
        addGram(s.inputGram, *a.attnInput);
    }
    s.tokens += a.attnInput->rows();
}

void collectLayerStatistics(const ComputeBackend& backend, const Transformer& model, const CalibrationSet& calibration, const StatisticsOptions& options,
                            const std::function<void(std::int64_t layer, LayerStatistics&& stats)>& onLayer,
                            const JobControl& job, OriginalTrajectory* keep)
{
    const ModelConfig& c = model.config();
    for (const auto& s : calibration.sequences) {
        if (c.maxPositions > 0 && static_cast<std::int64_t>(s.size()) > c.maxPositions)
            throw Error("a calibration sequence of " + std::to_string(s.size()) + " tokens exceeds the model's context of "
                        + std::to_string(c.maxPositions));
    }
    // The CPU backend runs model.runLayer with the statistics observer.
    const std::unique_ptr<LayerBatchRunner> runner = backend.layerRunner(model, calibration.sequences);
    if (keep)
        keep->start(calibration.sequences, c.layers);
    for (std::int64_t l = 0; l < c.layers; ++l) {
        if (keep && keep->wants(l, c.hidden))
            keep->keep(l, runner->hiddenStates());
        LayerStatistics stats = emptyStatistics(c, options);
        runner->runLayer(l, options, &stats,
                         job.slice(static_cast<double>(l) / static_cast<double>(c.layers),
                                   static_cast<double>(l + 1) / static_cast<double>(c.layers)));
        onLayer(l, std::move(stats));
    }
    job.progress(1.0, "calibration done");
}

} // namespace mla
