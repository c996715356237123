#include "conversion/budget_allocation.h"

#include "conversion/candidate_errors.h"

#include "analysis/key_value_split.h"
#include "analysis/original_trajectory.h"
#include "conversion/layer_converter.h"
#include "conversion/sequential_converter.h"
#include "engine/ops.h"
#include "numerics/gram.h"
#include "util/error.h"
#include "util/parallel_for.h"
#include "util/progress_rate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
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

CandidateErrorOptions candidateErrorOptions(const AllocationOptions& options)
{
    CandidateErrorOptions eo;
    eo.queryRows = options.queryRows;
    eo.sequences = options.sequences;
    eo.sketch = options.sketch;
    return eo;
}

namespace {

// Latent widths measured for p pairs: latentSteps points spread up to twice the average per-layer budget.
std::vector<std::int64_t> candidateWidths(const ModelConfig& c, const AllocationOptions& options, double average, std::int64_t p)
{
    const std::int64_t rope = c.kvHeads * 2 * p;
    const std::int64_t rank = c.kvHeads * (c.headDim - 2 * p) + c.kvDim();
    std::set<std::int64_t> widths;
    for (int i = 1; i <= options.latentSteps; ++i) {
        const double e = 2.0 * average * static_cast<double>(i) / static_cast<double>(options.latentSteps);
        const auto d = static_cast<std::int64_t>(std::llround(e)) - rope;
        if (d >= 1)
            widths.insert(std::min(d, std::min(rank, c.hidden)));
    }
    return {widths.begin(), widths.end()};
}

// One layer's calibration inputs, the original attention outputs on them and their covariance.
struct LayerInputs {
    std::vector<MatrixRM> x, target;
    MatrixXdRM covariance;
    MatrixXdRM whitening; // attentionWhitening(covariance), for activation-aware candidates
    double streamEnergy = 0.0;
};

// `covariance`: the analysis's covariance of this layer's attention inputs when it was measured on exactly these
// tokens (the same numbers, so not accumulated again), else null.
// `targets`: the sequences whose attention outputs are wanted (the candidates' evaluated sequences, or every one
// when the next layer's inputs are computed from them); the others are left empty.
LayerInputs layerInputs(const ModelConfig& c, const LayerWeights& w, const Transformer& original, std::span<const MatrixRM> hidden,
                        std::int64_t tokens, const MatrixXdRM* covariance, bool activationAware, const std::vector<bool>& targets)
{
    const float eps = static_cast<float>(c.rmsEps);
    LayerInputs in;
    in.x.resize(hidden.size());
    in.target.resize(hidden.size());
    if (!covariance)
        in.covariance = MatrixXdRM::Zero(c.hidden, c.hidden);
    parallelForEach(static_cast<std::int64_t>(hidden.size()), [&](std::int64_t i) {
        const auto s = static_cast<std::size_t>(i);
        rmsNormRows(hidden[s], w.attnNorm, eps, in.x[s]);
        if (targets[s])
            linear(w.o, w.oBias, original.attentionContext(0, in.x[s]), in.target[s]);
    });
    for (std::size_t s = 0; s < hidden.size(); ++s) {
        if (!covariance)
            addGram(in.covariance, in.x[s]);
        in.streamEnergy += squaredFrobeniusNorm(hidden[s]);
    }
    if (covariance)
        in.covariance = *covariance;
    else
        in.covariance /= static_cast<double>(tokens);
    if (activationAware)
        in.whitening = attentionWhitening(in.covariance);
    return in;
}

ConvertedAttention convertAtWidest(const ComputeBackend& backend, const ModelConfig& c, const LayerWeights& w, const AnalysisResult& analysis,
                                   const AllocationOptions& options, std::int64_t l, std::int64_t p, std::int64_t widest,
                                   const LayerInputs& in, const WhitenedKeyValue* keyValue, const JobControl& job, MlaLayerConfig& m)
{
    m.keptPairs = selectLayerPairs(c, options.strategy, p, 0, &analysis.layers[static_cast<std::size_t>(l)].scores);
    m.method = LatentMethod::Joint;
    m.latentK = widest;
    ConversionSettings settings;
    settings.activationAware = options.activationAware;
    // The candidates' errors are measured on attention outputs, not on weights: no reconstruction errors.
    AttentionConversionShortcuts shortcuts;
    shortcuts.whitening = in.whitening.size() > 0 ? &in.whitening : nullptr;
    shortcuts.relativeErrors = false;
    shortcuts.keyValue = keyValue;
    return convertAttention(backend, c, w, m, settings, &in.covariance, job, shortcuts);
}

// The layer's whitened [K; V] and its Gram, shared by every pair count's decomposition, where they serve it: on the
// CPU, activation-aware, with every key and value row fewer than the hidden width (so each pair count's joint matrix
// is decomposed on its rows' side, and the Gram stays below the hidden width squared).
std::optional<WhitenedKeyValue> sharedKeyValue(const ComputeBackend& backend, const ModelConfig& c, const LayerWeights& w, const LayerInputs& in)
{
    if (in.whitening.size() == 0 || backend.device().gpu || 2 * c.kvDim() >= c.hidden)
        return std::nullopt;
    return whitenedKeyValue(backend, w, in.whitening);
}

// The exhaustive reference: a single-layer model per candidate, full attention over every token.
void measureLayerExhaustive(const ComputeBackend& backend, const Model& model, const AnalysisResult& analysis, const AllocationOptions& options,
                            std::int64_t l, double average, std::int64_t maxPairs, const LayerInputs& in,
                            std::vector<AllocationCandidate>& out, const JobControl& job)
{
    const ModelConfig& c = model.config;
    const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
    const std::optional<WhitenedKeyValue> keyValue = sharedKeyValue(backend, c, w, in);
    for (std::int64_t p = 0; p <= maxPairs; ++p) {
        if (options.onlyPairs >= 0 && p != options.onlyPairs)
            continue;
        job.progress((static_cast<double>(l) + static_cast<double>(p) / static_cast<double>(maxPairs + 1)) / static_cast<double>(c.layers),
                     "measuring allocation candidates");
        const std::vector<std::int64_t> widths = candidateWidths(c, options, average, p);
        if (widths.empty())
            continue;
        const std::int64_t rope = c.kvHeads * 2 * p;
        MlaLayerConfig m;
        // The factors at the largest width; narrower widths are their leading columns (the truncated decomposition).
        const ConvertedAttention full = convertAtWidest(backend, c, w, analysis, options, l, p, widths.back(), in,
                                                        keyValue ? &*keyValue : nullptr, job, m);
        for (std::int64_t d : widths) {
            ConvertedAttention a = full;
            a.downKv = full.downKv.topRows(d);
            a.upK = full.upK.leftCols(d);
            a.upV = full.upV.leftCols(d);
            MlaLayerConfig md = m;
            md.latentK = d;
            LayerWeights cw = w;
            installConverted(cw, a);
            const Transformer candidate(singleLayerModel(model, cw, md), MlaForm::Expanded);
            double err = 0.0;
            for (std::size_t s = 0; s < in.x.size(); ++s) {
                MatrixRM o;
                linear(w.o, w.oBias, candidate.attentionContext(0, in.x[s]), o);
                err += (o - in.target[s]).cast<double>().squaredNorm();
            }
            out.push_back({p, d, rope + d, in.streamEnergy > 0 ? err / in.streamEnergy : err});
        }
    }
}

// The pair counts of the candidates on the lower convex hull of (elements, cost), its decreasing part: the only
// candidates a Lagrangian relaxation of the budget problem picks, whatever the budget.
std::set<std::int64_t> hullPairs(std::vector<AllocationCandidate> cs)
{
    std::sort(cs.begin(), cs.end(), [](const AllocationCandidate& a, const AllocationCandidate& b) {
        return a.elements != b.elements ? a.elements < b.elements : a.cost < b.cost;
    });
    std::vector<AllocationCandidate> hull;
    for (const AllocationCandidate& a : cs) {
        if (!hull.empty() && a.cost >= hull.back().cost)
            continue; // not cheaper than a smaller candidate: never chosen
        while (hull.size() >= 2) {
            const AllocationCandidate& o = hull[hull.size() - 2];
            const AllocationCandidate& b = hull.back();
            // b above the segment o-a: drop it.
            const double cross = static_cast<double>(b.elements - o.elements) * (a.cost - o.cost)
                                 - (b.cost - o.cost) * static_cast<double>(a.elements - o.elements);
            if (cross <= 0.0)
                hull.pop_back();
            else
                break;
        }
        hull.push_back(a);
    }
    std::set<std::int64_t> pairs;
    for (const AllocationCandidate& a : hull)
        pairs.insert(a.pairs);
    return pairs;
}

// Coarse to fine over the pair counts: a coarse grid, then around every pair count on the hull the counts half a
// step away, until the step is 1. Errors change smoothly with the pair count, so the hull's counts are found.
void measureLayerFast(const ComputeBackend& backend, const Model& model, const AnalysisResult& analysis, const AllocationOptions& options,
                      std::int64_t l, double average, std::int64_t maxPairs, const LayerInputs& in,
                      std::vector<AllocationCandidate>& out, const JobControl& job, const ProgressRate& rate)
{
    const ModelConfig& c = model.config;
    const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
    const LayerCandidateErrors evaluator(c, w, in.x, in.target, candidateErrorOptions(options));
    const std::optional<WhitenedKeyValue> keyValue = sharedKeyValue(backend, c, w, in);
    std::set<std::int64_t> measured;
    std::int64_t step = options.pairStep;
    if (step <= 0) {
        step = 1;
        // About 4 coarse counts: the refinement finds the hull's counts from there (tst_allocation_speed, steps 2 and
        // 4 against every count); a grid of 8 measured a third more candidates for the same splits (docs/benchmarks.md).
        while (step * 2 * 4 <= maxPairs + 1)
            step *= 2;
    }
    int levels = 0;
    for (std::int64_t s = step; s > 1; s /= 2)
        ++levels;
    const double expected = static_cast<double>(maxPairs / step + 1 + 4 * levels);
    auto measure = [&](std::int64_t p) {
        if (p < 0 || p > maxPairs || measured.count(p) || (options.onlyPairs >= 0 && p != options.onlyPairs))
            return;
        measured.insert(p);
        const double done = static_cast<double>(l) + std::min(0.99, static_cast<double>(measured.size()) / expected);
        job.progress(done / static_cast<double>(c.layers),
                     "measuring allocation candidates (" + rate.describe(done, static_cast<double>(c.layers)) + ")");
        const std::vector<std::int64_t> widths = candidateWidths(c, options, average, p);
        if (widths.empty())
            return;
        MlaLayerConfig m;
        const ConvertedAttention full = convertAtWidest(backend, c, w, analysis, options, l, p, widths.back(), in,
                                                        keyValue ? &*keyValue : nullptr, job, m);
        const std::vector<double> errors = evaluator.errors(full, m.keptPairs, widths);
        const std::int64_t rope = c.kvHeads * 2 * p;
        for (std::size_t i = 0; i < widths.size(); ++i)
            out.push_back({p, widths[i], rope + widths[i], in.streamEnergy > 0 ? errors[i] / in.streamEnergy : errors[i]});
    };
    if (options.onlyPairs >= 0) {
        measure(options.onlyPairs);
        return;
    }
    for (std::int64_t p = 0; p <= maxPairs; p += step)
        measure(p);
    measure(maxPairs);
    for (std::int64_t h = step / 2; h >= 1; h /= 2) {
        for (std::int64_t p : hullPairs(out)) {
            measure(p - h);
            measure(p + h);
        }
    }
}

} // namespace

std::vector<std::vector<AllocationCandidate>> measureAllocationCandidates(const ComputeBackend& backend, const Model& model, const AnalysisResult& analysis,
                                                                          const CalibrationSet& calibration,
                                                                          const AllocationOptions& options, const JobControl& job,
                                                                          OriginalTrajectory* kept)
{
    const ModelConfig& c = model.config;
    if (static_cast<std::int64_t>(analysis.layers.size()) != c.layers)
        throw Error("internal: the analysis does not match the model");
    const double average = static_cast<double>(options.budget) / static_cast<double>(c.layers);
    const std::int64_t maxPairs = std::min<std::int64_t>(c.headDim / 2, static_cast<std::int64_t>(2.0 * average / (2.0 * c.kvHeads)));

    // The calibration tokens used: whole sequences up to maxTokens.
    std::size_t count = 0;
    std::int64_t tokens = 0;
    for (const auto& s : calibration.sequences) {
        if (tokens >= options.maxTokens)
            break;
        tokens += static_cast<std::int64_t>(s.size());
        ++count;
    }
    OriginalLayerInputs inputs(Transformer(model), calibration.sequences, count, kept);
    inputs.keepComputedIn(kept);
    // Every calibration sequence used and they are the analysis's: its per-layer covariances are of these tokens.
    const bool sameTokens = count == calibration.sequences.size() && calibration.sequences == analysis.calibrationIds;
    std::vector<std::vector<AllocationCandidate>> all(static_cast<std::size_t>(c.layers));
    const ProgressRate rate("layer");
    for (std::int64_t l = 0; l < c.layers; ++l) {
        job.checkCancelled();
        const LayerWeights& w = model.layers[static_cast<std::size_t>(l)];
        const Transformer original(singleLayerModel(model, w, std::nullopt), MlaForm::Expanded);
        const MatrixXdRM& measured = analysis.layers[static_cast<std::size_t>(l)].inputCovariance;
        // The original attention outputs (a full attention pass) only where they are read: the sequences the fast
        // path evaluates, unless the next layer's inputs are computed from them or every token is evaluated.
        const bool everyTarget = options.exhaustive || (l + 1 < c.layers && !inputs.readsNext());
        const std::vector<bool> targets = everyTarget ? std::vector<bool>(count, true)
                                                      : LayerCandidateErrors::evaluatedSequences(count, candidateErrorOptions(options));
        const LayerInputs in = layerInputs(c, w, original, inputs.current(), tokens, sameTokens && measured.rows() == c.hidden ? &measured : nullptr,
                                           options.activationAware, targets);
        if (options.exhaustive)
            measureLayerExhaustive(backend, model, analysis, options, l, average, maxPairs, in, all[static_cast<std::size_t>(l)], job);
        else
            measureLayerFast(backend, model, analysis, options, l, average, maxPairs, in, all[static_cast<std::size_t>(l)], job, rate);
        // The attention outputs are the targets just computed: only the feed-forward block runs, and not even that
        // when the calibration pass kept the next layer's inputs (or after the last layer).
        if (l + 1 < c.layers)
            inputs.advance(original, in.target);
    }
    job.progress(1.0, "allocation candidates measured");
    return all;
}

} // namespace mla
