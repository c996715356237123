#include "conversion/budget_allocation.h"

#include "analysis/key_value_split.h"
#include "conversion/layer_converter.h"
#include "conversion/sequential_converter.h"
#include "engine/ops.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace mla {

Allocation allocateBudget(const std::vector<std::vector<AllocationCandidate>>& candidates, std::int64_t budget)
{
    const std::size_t layers = candidates.size();
    if (layers == 0)
        throw Error("internal: nothing to allocate");
    std::int64_t minimum = 0;
    for (const auto& layer : candidates) {
        if (layer.empty())
            throw Error("internal: a layer without allocation candidates");
        std::int64_t cheapest = std::numeric_limits<std::int64_t>::max();
        for (const auto& c : layer)
            cheapest = std::min(cheapest, c.elements);
        minimum += cheapest;
    }
    if (minimum > budget)
        throw Error("a KV budget of " + std::to_string(budget) + " elements per token is below the smallest possible cache ("
                    + std::to_string(minimum) + ")");
    // Dynamic programming in units of `grain` elements keeps the table small for large models; candidate sizes are
    // rounded up, so the result never exceeds the budget.
    const std::int64_t grain = std::max<std::int64_t>(1, budget / 8192);
    const std::int64_t units = budget / grain;
    constexpr double kInf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> best(layers + 1, std::vector<double>(static_cast<std::size_t>(units + 1), kInf));
    std::vector<std::vector<int>> choice(layers, std::vector<int>(static_cast<std::size_t>(units + 1), -1));
    best[0][0] = 0.0;
    for (std::size_t l = 0; l < layers; ++l) {
        for (std::int64_t u = 0; u <= units; ++u) {
            if (best[l][static_cast<std::size_t>(u)] == kInf)
                continue;
            for (std::size_t c = 0; c < candidates[l].size(); ++c) {
                const std::int64_t cu = (candidates[l][c].elements + grain - 1) / grain;
                const std::int64_t v = u + cu;
                if (v > units)
                    continue;
                const double total = best[l][static_cast<std::size_t>(u)] + candidates[l][c].cost;
                if (total < best[l + 1][static_cast<std::size_t>(v)]) {
                    best[l + 1][static_cast<std::size_t>(v)] = total;
                    choice[l][static_cast<std::size_t>(v)] = static_cast<int>(c);
                }
            }
        }
    }
    std::int64_t end = -1;
    for (std::int64_t u = 0; u <= units; ++u) {
        if (best[layers][static_cast<std::size_t>(u)] < kInf
            && (end < 0 || best[layers][static_cast<std::size_t>(u)] < best[layers][static_cast<std::size_t>(end)]))
            end = u;
    }
    if (end < 0)
        throw Error("a KV budget of " + std::to_string(budget) + " elements per token cannot be met by the candidates");
    Allocation a;
    a.pairs.resize(layers);
    a.latent.resize(layers);
    a.cost.resize(layers);
    a.totalCost = best[layers][static_cast<std::size_t>(end)];
    std::int64_t u = end;
    for (std::size_t l = layers; l-- > 0;) {
        const AllocationCandidate& c = candidates[l][static_cast<std::size_t>(choice[l][static_cast<std::size_t>(u)])];
        a.pairs[l] = c.pairs;
        a.latent[l] = c.latent;
        a.cost[l] = c.cost;
        a.elements += c.elements;
        u -= (c.elements + grain - 1) / grain;
    }
    return a;
}

std::vector<std::vector<AllocationCandidate>> measureAllocationCandidates(const ComputeBackend& backend, const Model& model, const AnalysisResult& analysis,
                                                                          const CalibrationSet& calibration,
                                                                          const AllocationOptions& options, const JobControl& job)
{
    const ModelConfig& c = model.config;
    if (static_cast<std::int64_t>(analysis.layers.size()) != c.layers)
        throw Error("internal: the analysis does not match the model");
    const double average = static_cast<double>(options.budget) / static_cast<double>(c.layers);
    const std::int64_t maxPairs = std::min<std::int64_t>(c.headDim / 2, static_cast<std::int64_t>(2.0 * average / (2.0 * c.kvHeads)));

    // The calibration tokens used: whole sequences up to maxTokens.
    std::vector<MatrixRM> hidden;
    const Transformer base(model);
    std::int64_t tokens = 0;
    for (const auto& s : calibration.sequences) {
        if (tokens >= options.maxTokens)
            break;
        hidden.push_back(base.embed(s));
        tokens += static_cast<std::int64_t>(s.size());
    }
    const float eps = static_cast<float>(c.rmsEps);
    std::vector<std::vector<AllocationCandidate>> all(static_cast<std::size_t>(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
        const Transformer original(singleLayerModel(model, w, std::nullopt), MlaForm::Expanded);
        std::vector<MatrixRM> x(hidden.size()), target(hidden.size());
        MatrixXdRM covariance = MatrixXdRM::Zero(c.hidden, c.hidden);
        double streamEnergy = 0.0;
        for (std::size_t s = 0; s < hidden.size(); ++s) {
            rmsNormRows(hidden[s], w.attnNorm, eps, x[s]);
            const MatrixXdRM xd = x[s].cast<double>();
            covariance.noalias() += xd.transpose() * xd;
            streamEnergy += hidden[s].cast<double>().squaredNorm();
            linear(w.o, w.oBias, original.attentionContext(0, x[s]), target[s]);
        }
        covariance /= static_cast<double>(tokens);

        for (std::int64_t p = 0; p <= maxPairs; ++p) {
            job.progress((static_cast<double>(l) + static_cast<double>(p) / static_cast<double>(maxPairs + 1)) / static_cast<double>(c.layers),
                         "measuring allocation candidates");
            const std::int64_t rope = c.kvHeads * 2 * p;
            const std::int64_t rank = c.kvHeads * (c.headDim - 2 * p) + c.kvDim();
            std::set<std::int64_t> widths;
            for (int i = 1; i <= options.latentSteps; ++i) {
                const double e = 2.0 * average * static_cast<double>(i) / static_cast<double>(options.latentSteps);
                const auto d = static_cast<std::int64_t>(std::llround(e)) - rope;
                if (d >= 1)
                    widths.insert(std::min(d, std::min(rank, c.hidden)));
            }
            if (widths.empty())
                continue;
            MlaLayerConfig m;
            m.keptPairs = selectLayerPairs(c, options.strategy, p, 0, &analysis.layers[static_cast<std::size_t>(l)].scores);
            m.method = LatentMethod::Joint;
            m.latentK = *widths.rbegin();
            ConversionSettings settings;
            settings.activationAware = options.activationAware;
            // The factors at the largest width; narrower widths are their leading columns (the truncated decomposition).
            const ConvertedAttention full = convertAttention(backend, c, w, m, settings, &covariance, job);
            for (std::int64_t d : widths) {
                ConvertedAttention a = full;
                a.downKv = full.downKv.topRows(d);
                a.upK = full.upK.leftCols(d);
                a.upV = full.upV.leftCols(d);
                MlaLayerConfig md = m;
                md.latentK = d;
                LayerWeights cw = w;
                cw.q = Tensor::fromMatrix(a.q);
                cw.qBias = a.qBias;
                cw.k = cw.v = Tensor();
                cw.kBias = cw.vBias = VectorF();
                cw.kRope = a.kRope.rows() > 0 ? Tensor::fromMatrix(a.kRope) : Tensor();
                cw.kRopeBias = a.kRopeBias;
                cw.downKv = Tensor::fromMatrix(a.downKv);
                cw.upK = a.upK.rows() > 0 ? Tensor::fromMatrix(a.upK) : Tensor();
                cw.upV = Tensor::fromMatrix(a.upV);
                cw.upKBias = a.upKBias;
                cw.upVBias = a.upVBias;
                const Transformer candidate(singleLayerModel(model, cw, md), MlaForm::Expanded);
                double err = 0.0;
                for (std::size_t s = 0; s < x.size(); ++s) {
                    MatrixRM out;
                    linear(w.o, w.oBias, candidate.attentionContext(0, x[s]), out);
                    err += (out - target[s]).cast<double>().squaredNorm();
                }
                all[static_cast<std::size_t>(l)].push_back({p, d, rope + d, streamEnergy > 0 ? err / streamEnergy : err});
            }
        }
        // Advance the original hidden states.
        for (auto& h : hidden)
            original.runLayer(0, h);
    }
    job.progress(1.0, "allocation candidates measured");
    return all;
}

} // namespace mla
