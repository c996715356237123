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

namespace {

// Rows of attention input gathered per layer before they are added to its Gram: enough for the GEMM to run near its
// speed, little memory next to the Gram itself.
constexpr Eigen::Index kGramBlockRows = 256;

} // namespace

StatisticsAccumulator::StatisticsAccumulator(const ModelConfig& config, const StatisticsOptions& options)
    : m_config(config), m_options(options)
{
    const auto layers = static_cast<std::size_t>(config.layers);
    m_layers.reserve(layers);
    for (std::size_t l = 0; l < layers; ++l)
        m_layers.push_back(emptyStatistics(config, options));
    if (options.inputGram) {
        m_pending.assign(layers, MatrixRM(kGramBlockRows, config.hidden));
        m_pendingRows.assign(layers, 0);
    }
}

void StatisticsAccumulator::onLayer(const LayerActivations& a)
{
    if (a.layer < 0 || a.layer >= m_config.layers || !a.attnInput)
        throw Error("internal: statistics of a layer the model does not have");
    const auto l = static_cast<std::size_t>(a.layer);
    StatisticsOptions pairsOnly = m_options;
    pairsOnly.inputGram = false;
    accumulateStatistics(m_config, a, pairsOnly, m_layers[l]);
    if (!m_options.inputGram)
        return;
    const MatrixRM& x = *a.attnInput;
    for (Eigen::Index r = 0; r < x.rows();) {
        const Eigen::Index count = std::min(x.rows() - r, kGramBlockRows - m_pendingRows[l]);
        m_pending[l].middleRows(m_pendingRows[l], count) = x.middleRows(r, count);
        m_pendingRows[l] += count;
        r += count;
        if (m_pendingRows[l] == kGramBlockRows)
            flush(l);
    }
}

void StatisticsAccumulator::flush(std::size_t l)
{
    if (m_pendingRows[l] == 0)
        return;
    if (m_pendingRows[l] == kGramBlockRows) {
        addGram(m_layers[l].inputGram, m_pending[l]);
    } else {
        const MatrixRM part = m_pending[l].topRows(m_pendingRows[l]);
        addGram(m_layers[l].inputGram, part);
    }
    m_pendingRows[l] = 0;
}

std::vector<LayerStatistics> StatisticsAccumulator::take()
{
    if (m_options.inputGram) {
        for (std::size_t l = 0; l < m_layers.size(); ++l)
            flush(l);
    }
    m_pending.clear();
    m_pendingRows.clear();
    return std::move(m_layers);
}

std::uint64_t StatisticsAccumulator::bytes(const ModelConfig& c, const StatisticsOptions& options)
{
    const auto pairs = static_cast<std::uint64_t>(c.headDim / 2);
    std::uint64_t perLayer = 4 * pairs * static_cast<std::uint64_t>(c.heads + c.kvHeads) * sizeof(double);
    if (options.inputGram) {
        const auto hidden = static_cast<std::uint64_t>(c.hidden);
        perLayer += hidden * hidden * sizeof(double) + static_cast<std::uint64_t>(kGramBlockRows) * hidden * sizeof(float);
    }
    return perLayer * static_cast<std::uint64_t>(std::max<std::int64_t>(c.layers, 0));
}

void collectLayerStatistics(const ComputeBackend& backend, const Transformer& model, const CalibrationSet& calibration, const StatisticsOptions& options,
                            const std::function<void(std::int64_t layer, LayerStatistics&& stats)>& onLayer,
                            const JobControl& job, OriginalTrajectory* keep, std::vector<LayerStatistics>* measured)
{
    const ModelConfig& c = model.config();
    for (const auto& s : calibration.sequences) {
        if (c.maxPositions > 0 && static_cast<std::int64_t>(s.size()) > c.maxPositions)
            throw Error("a calibration sequence of " + std::to_string(s.size()) + " tokens exceeds the model's context of "
                        + std::to_string(c.maxPositions));
    }
    if (keep)
        keep->start(calibration.sequences, c.layers);
    if (measured) {
        if (static_cast<std::int64_t>(measured->size()) != c.layers)
            throw Error("internal: measured statistics for " + std::to_string(measured->size()) + " of " + std::to_string(c.layers) + " layers");
        for (const LayerStatistics& s : *measured) {
            if (s.tokens != calibration.tokens())
                throw Error("internal: statistics measured on " + std::to_string(s.tokens) + " tokens of a calibration of "
                            + std::to_string(calibration.tokens()));
        }
    }
    // The CPU backend runs model.runLayer with the statistics observer. With statistics measured already, layers run
    // (without statistics) only while the trajectory keeps their outputs.
    std::unique_ptr<LayerBatchRunner> runner = measured ? nullptr : backend.layerRunner(model, calibration.sequences);
    for (std::int64_t l = 0; l < c.layers; ++l) {
        if (keep && runner && keep->wants(l, c.hidden))
            keep->keep(l, runner->hiddenStates());
        if (measured) {
            const bool run = keep && keep->wants(l + 1, c.hidden) && (l == 0 || runner);
            if (run && !runner)
                runner = backend.layerRunner(model, calibration.sequences);
            else if (!run)
                runner.reset();
        }
        LayerStatistics stats = measured ? std::move((*measured)[static_cast<std::size_t>(l)]) : emptyStatistics(c, options);
        if (runner)
            runner->runLayer(l, options, measured ? nullptr : &stats,
                             job.slice(static_cast<double>(l) / static_cast<double>(c.layers),
                                       static_cast<double>(l + 1) / static_cast<double>(c.layers)));
        onLayer(l, std::move(stats));
    }
    job.progress(1.0, "calibration done");
}

} // namespace mla
