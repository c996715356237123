#include "analysis/layer_statistics.h"

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

class StatisticsObserver : public ForwardObserver {
public:
    StatisticsObserver(const ModelConfig& config, const StatisticsOptions& options, LayerStatistics& stats)
        : m_config(config), m_options(options), m_stats(stats) {}
    void onLayer(const LayerActivations& a) override { accumulateStatistics(m_config, a, m_options, m_stats); }

private:
    const ModelConfig& m_config;
    const StatisticsOptions& m_options;
    LayerStatistics& m_stats;
};

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
        const MatrixXdRM x = a.attnInput->cast<double>();
        s.inputGram.noalias() += x.transpose() * x;
    }
    s.tokens += a.attnInput->rows();
}

void collectLayerStatistics(const Transformer& model, const CalibrationSet& calibration, const StatisticsOptions& options,
                            const std::function<void(std::int64_t layer, LayerStatistics&& stats)>& onLayer,
                            const JobControl& job)
{
    const ModelConfig& c = model.config();
    std::vector<MatrixRM> hidden;
    hidden.reserve(calibration.sequences.size());
    for (const auto& s : calibration.sequences) {
        if (c.maxPositions > 0 && static_cast<std::int64_t>(s.size()) > c.maxPositions)
            throw Error("a calibration sequence of " + std::to_string(s.size()) + " tokens exceeds the model's context of "
                        + std::to_string(c.maxPositions));
        hidden.push_back(model.embed(s));
    }
    for (std::int64_t l = 0; l < c.layers; ++l) {
        LayerStatistics stats = emptyStatistics(c, options);
        StatisticsObserver observer(c, options, stats);
        for (std::size_t i = 0; i < hidden.size(); ++i) {
            job.progress((static_cast<double>(l) + static_cast<double>(i) / static_cast<double>(hidden.size()))
                             / static_cast<double>(c.layers),
                         "calibrating layer " + std::to_string(l));
            model.runLayer(l, hidden[i], &observer);
        }
        onLayer(l, std::move(stats));
    }
    job.progress(1.0, "calibration done");
}

} // namespace mla
