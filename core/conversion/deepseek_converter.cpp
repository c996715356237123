#include "conversion/deepseek_converter.h"

#include "analysis/rope_selection.h"
#include "conversion/least_squares.h"
#include "conversion/sequential_converter.h"
#include "engine/ops.h"
#include "model/architecture.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <cmath>
#include <limits>
#include <set>

namespace mla {
namespace {

constexpr std::int64_t kFlashMlaLatent = 512;
constexpr std::int64_t kFlashMlaRope = 64;
constexpr std::int64_t kDefaultRopeCap = 64; // DeepSeek-V2/V3's own qk_rope_head_dim

struct PairObserver : ForwardObserver {
    const ModelConfig* config = nullptr;
    RopePairStatistics* stats = nullptr;
    void onLayer(const LayerActivations& a) override
    {
        if (a.queries && a.keys)
            accumulateRopePairs(*config, *a.queries, *a.keys, *stats);
    }
};

// Attention output (o_proj applied) of a one-layer DeepSeek model on each input, and the attention contexts.
std::vector<MatrixRM> deepSeekOutputs(const Model& base, const ModelConfig& target, const LayerWeights& w,
                                      const std::vector<MatrixRM>& inputs, std::vector<MatrixRM>* contexts = nullptr)
{
    const Transformer t(singleDeepSeekLayerModel(base, target, w), MlaForm::Expanded);
    std::vector<MatrixRM> outputs;
    for (const MatrixRM& x : inputs) {
        MatrixRM ctx = t.attentionContext(0, x);
        MatrixRM out;
        linear(w.o, w.oBias, ctx, out);
        outputs.push_back(std::move(out));
        if (contexts)
            contexts->push_back(std::move(ctx));
    }
    return outputs;
}

double relativeError(const std::vector<MatrixRM>& got, const std::vector<MatrixRM>& want, double* absolute = nullptr)
{
    double err = 0.0, norm = 0.0;
    for (std::size_t s = 0; s < got.size(); ++s) {
        err += (got[s] - want[s]).cast<double>().squaredNorm();
        norm += want[s].cast<double>().squaredNorm();
    }
    if (absolute)
        *absolute = err;
    return norm > 0.0 ? err / norm : err;
}

std::vector<MatrixRM> normalised(const std::vector<MatrixRM>& hidden, const VectorF& weight, float eps)
{
    std::vector<MatrixRM> out(hidden.size());
    for (std::size_t s = 0; s < hidden.size(); ++s)
        rmsNormRows(hidden[s], weight, eps, out[s]);
    return out;
}

std::vector<MatrixRM> originalOutputs(const Model& original, const LayerWeights& w, const std::vector<MatrixRM>& inputs)
{
    const Transformer t(singleLayerModel(original, w, std::nullopt), MlaForm::Expanded);
    std::vector<MatrixRM> out(inputs.size());
    for (std::size_t s = 0; s < inputs.size(); ++s)
        linear(w.o, w.oBias, t.attentionContext(0, inputs[s]), out[s]);
    return out;
}

std::vector<bool> balanceChoices(const ConversionSettings& s)
{
    return s.chooseBalance ? std::vector<bool>{false, true} : std::vector<bool>{s.balanceKeyValue};
}

} // namespace

void requireDeepSeekConvertible(const ModelConfig& c, const std::filesystem::path& file)
{
    const auto fail = [&](const std::string& problem) {
        if (file.empty())
            throw Error("--target deepseek-v3: " + problem);
        throw Error(file, problem);
    };
    if (c.isMla() || c.deepseek)
        fail("the model already uses Multi-head Latent Attention");
    const ArchitectureInfo& arch = architectureInfo(c.architecture);
    if (!arch.conversionSupported)
        fail(std::string(arch.displayName) + " conversion is not supported yet: " + std::string(arch.conversionUnsupportedReason));
    if (c.mlpBias)
        fail("the MLP has biases; the DeepSeek-V3 layout's dense MLP has none (the deepseek-v3 target cannot hold them)");
    if (c.slidingWindow > 0 && c.slidingWindow < c.maxPositions)
        fail("the model attends through a sliding window of " + std::to_string(c.slidingWindow)
                              + " tokens; the DeepSeek-V3 layout has no sliding window");
}

DeepSeekWidths deepSeekWidths(const ModelConfig& c, const ConversionSettings& s, bool* measure)
{
    DeepSeekWidths w;
    const std::int64_t original = 2 * c.kvHeads * c.headDim;
    const std::int64_t components = c.kvHeads * c.pairsPerHead();
    const std::int64_t rankCap = std::min(c.hidden, 2 * c.kvDim());
    if (measure)
        *measure = false;
    if (s.method != LatentMethod::Joint)
        throw Error("the DeepSeek-V3 layout has one joint latent for keys and values (kv_a_proj_with_mqa): the latent "
                    "method must be joint, not " + std::string(latentMethodName(s.method)));
    if (s.flashMla) {
        if (s.latentDim > 0 || s.ropePairs >= 0 || s.kvBudget > 0)
            throw Error("--flashmla fixes kv_lora_rank 512 and qk_rope_head_dim 64; give no latent width, RoPE pairs or KV budget with it");
        if (kFlashMlaLatent + kFlashMlaRope >= original)
            throw Error("the model is too small for FlashMLA: its 512 + 64 = 576 cached values per token and layer are not "
                        "fewer than the original's " + std::to_string(original) + " (2 x " + std::to_string(c.kvHeads)
                        + " KV heads x head size " + std::to_string(c.headDim) + "), so nothing would be saved");
        if (kFlashMlaLatent > rankCap)
            throw Error("the model is too small for FlashMLA: a 512-wide latent needs 512 independent directions, but the "
                        "keys and values of hidden size " + std::to_string(c.hidden) + " span at most " + std::to_string(rankCap));
        if (kFlashMlaRope / 2 > components)
            throw Error("the model is too small for FlashMLA: a 64-wide RoPE head needs 32 rotating pairs, the model has "
                        + std::to_string(components));
        w.ropeDim = kFlashMlaRope;
        w.kvLoraRank = kFlashMlaLatent;
        w.budgetPerLayer = w.ropeDim + w.kvLoraRank;
        w.origin = "flashmla";
        return w;
    }
    if (s.kvBudget > 0)
        w.budgetPerLayer = s.kvBudget / c.layers;
    else if (s.targetSaving > 0.0 && s.targetSaving < 1.0)
        w.budgetPerLayer = static_cast<std::int64_t>(std::llround((1.0 - s.targetSaving) * static_cast<double>(original)));
    else
        throw Error("the KV saving must be between 0 and 1 (exclusive), got " + std::to_string(s.targetSaving));
    const bool ropeGiven = s.ropePairs >= 0;
    if (ropeGiven) {
        w.ropeDim = 2 * s.ropePairs;
    } else {
        w.ropeDim = std::min<std::int64_t>(2 * c.kvHeads * defaultRopePairs(c), kDefaultRopeCap);
        w.ropeDim = std::min(w.ropeDim, 2 * ((w.budgetPerLayer - 1) / 2));
    }
    w.kvLoraRank = s.latentDim > 0 ? s.latentDim : w.budgetPerLayer - w.ropeDim;
    if (s.latentDim > 0)
        w.budgetPerLayer = w.ropeDim + w.kvLoraRank;
    w.origin = ropeGiven || s.latentDim > 0 ? "given" : "default";
    if (w.ropeDim < 2)
        throw Error("the DeepSeek-V3 layout needs a shared RoPE head of at least one pair (qk_rope_head_dim >= 2); "
                    + std::string(ropeGiven ? "--rope-pairs 0 gives none" : "the KV budget of " + std::to_string(w.budgetPerLayer)
                                                                             + " values per layer leaves no room for one"));
    if (w.ropeDim / 2 > components)
        throw Error("a shared RoPE head of " + std::to_string(w.ropeDim / 2) + " pairs needs as many rotating components; the model has "
                    + std::to_string(components) + " (" + std::to_string(c.kvHeads) + " KV heads x " + std::to_string(c.pairsPerHead())
                    + " pairs)");
    if (w.kvLoraRank < 1)
        throw Error("a " + std::to_string(static_cast<int>(std::lround(100.0 * s.targetSaving))) + "% KV saving leaves "
                    + std::to_string(w.budgetPerLayer) + " values per layer: no room for a latent next to a " + std::to_string(w.ropeDim)
                    + "-wide RoPE head");
    if (w.kvLoraRank > rankCap)
        throw Error("a latent of " + std::to_string(w.kvLoraRank) + " is wider than the " + std::to_string(rankCap)
                    + " directions the keys and values can span (hidden size " + std::to_string(c.hidden) + ")");
    if (measure)
        *measure = s.allocate && !ropeGiven && s.latentDim <= 0;
    return w;
}

DeepSeekConversion convertToDeepSeek(const ComputeBackend& backend, const Model& original, const ConversionSettings& settings, const CalibrationSet& calibration,
                                     const JobControl& job, const DeepSeekConversionOptions& options)
{
    const ModelConfig& c = original.config;
    requireDeepSeekConvertible(c, original.source);
    if (calibration.sequences.empty())
        throw Error("the deepseek-v3 target needs calibration sequences (its shared RoPE head and latent norm are fitted on them)");
    bool measure = false;
    DeepSeekConversion result;
    result.widths = deepSeekWidths(c, settings, &measure);
    result.ropeContext = std::max<std::int64_t>(c.maxPositions, 2);
    const float eps = static_cast<float>(c.rmsEps);

    // 1. RoPE pair statistics of the original, layer by layer, on every calibration sequence.
    const Transformer base(original);
    std::vector<MatrixRM> hidden;
    for (const auto& seq : calibration.sequences) {
        hidden.push_back(base.embed(seq));
        result.calibrationTokens += static_cast<std::int64_t>(seq.size());
    }
    std::vector<std::vector<RopeComponent>> components;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        job.progress(0.15 * static_cast<double>(l) / static_cast<double>(c.layers), "RoPE statistics (layer " + std::to_string(l) + ")");
        job.checkCancelled();
        const LayerWeights& w = original.layers[static_cast<std::size_t>(l)];
        const Transformer layer(singleLayerModel(original, w, std::nullopt), MlaForm::Expanded);
        RopePairStatistics stats = emptyRopePairStatistics(c);
        PairObserver observer;
        observer.config = &c;
        observer.stats = &stats;
        for (const MatrixRM& h : hidden) {
            MatrixRM x;
            rmsNormRows(h, w.attnNorm, eps, x);
            layer.attentionContext(0, x, &observer);
        }
        components.push_back(ropeComponents(c, stats));
        for (MatrixRM& h : hidden)
            layer.runLayer(0, h);
    }

    // 2. The split of the per-layer budget, measured when asked: every candidate rope width on the original inputs.
    if (measure) {
        std::set<std::int64_t> widths = {result.widths.ropeDim};
        const std::int64_t maxRope = std::min(result.widths.budgetPerLayer - 1, c.kvHeads * c.headDim);
        for (std::int64_t r = 2; r <= maxRope; r *= 2)
            widths.insert(r);
        std::vector<DeepSeekWidths::Candidate> candidates;
        std::vector<SharedRopeLayout> layouts;
        const std::int64_t rankCap = std::min(c.hidden, 2 * c.kvDim());
        for (std::int64_t r : widths) {
            const std::int64_t latent = result.widths.budgetPerLayer - r;
            if (r < 2 || r % 2 != 0 || latent < 1 || latent > rankCap || r / 2 > c.kvHeads * c.pairsPerHead())
                continue;
            candidates.push_back({r, latent, 0.0});
            layouts.push_back(chooseSharedRope(components, r, result.ropeContext));
        }
        std::vector<MatrixRM> h;
        std::int64_t tokens = 0;
        for (const auto& seq : calibration.sequences) {
            if (tokens >= options.allocationTokens)
                break;
            h.push_back(base.embed(seq));
            tokens += static_cast<std::int64_t>(seq.size());
        }
        for (std::int64_t l = 0; l < c.layers; ++l) {
            job.progress(0.15 + 0.35 * static_cast<double>(l) / static_cast<double>(c.layers),
                         "measuring the rope / latent split (layer " + std::to_string(l) + ")");
            const LayerWeights& w = original.layers[static_cast<std::size_t>(l)];
            std::vector<MatrixRM> x = normalised(h, w.attnNorm, eps);
            const std::vector<MatrixRM> want = originalOutputs(original, w, x);
            double stream = 0.0;
            for (const MatrixRM& m : h)
                stream += m.cast<double>().squaredNorm();
            const DeepSeekLayerInputs in = deepSeekLayerInputs(x, x);
            for (std::size_t k = 0; k < candidates.size(); ++k) {
                job.checkCancelled();
                const ModelConfig target = deepSeekTargetConfig(c, candidates[k].ropeDim, candidates[k].kvLoraRank, layouts[k].theta,
                                                                options.latentNorm);
                DeepSeekLayerReport report;
                const LayerWeights built = buildDeepSeekLayer(backend, c, target, w, components[static_cast<std::size_t>(l)],
                                                              layouts[k].slotComponents[static_cast<std::size_t>(l)], in, settings,
                                                              settings.balanceKeyValue, report, job);
                double absolute = 0.0;
                relativeError(deepSeekOutputs(original, target, built, x), want, &absolute);
                candidates[k].cost += stream > 0.0 ? absolute / stream : absolute;
            }
            const Transformer layer(singleLayerModel(original, w, std::nullopt), MlaForm::Expanded);
            for (MatrixRM& m : h)
                layer.runLayer(0, m);
        }
        if (candidates.empty())
            throw Error("no split of " + std::to_string(result.widths.budgetPerLayer) + " cached values per layer into a RoPE head and a latent fits this model");
        std::size_t best = 0;
        for (std::size_t k = 1; k < candidates.size(); ++k) {
            if (candidates[k].cost < candidates[best].cost)
                best = k;
        }
        result.widths.ropeDim = candidates[best].ropeDim;
        result.widths.kvLoraRank = candidates[best].kvLoraRank;
        result.widths.origin = "measured";
        result.widths.candidates = candidates;
    }

    // 3. The shared head for the chosen width, then the layers in order on the inputs the converted model produces.
    result.rope = chooseSharedRope(components, result.widths.ropeDim, result.ropeContext);
    const ModelConfig target = deepSeekTargetConfig(c, result.widths.ropeDim, result.widths.kvLoraRank, result.rope.theta, options.latentNorm);
    target.validate("deepseek-v3 target");
    std::uint64_t convertedBytes = 0;
    for (const PlannedTensor& p : tensorPlan(target)) {
        if (p.role == TensorRole::Q || p.role == TensorRole::KvA || p.role == TensorRole::KvB || p.role == TensorRole::O) {
            std::uint64_t n = sizeof(float);
            for (std::int64_t dim : p.shape)
                n *= static_cast<std::uint64_t>(dim);
            convertedBytes += n;
        }
    }
    requireMemory(convertedBytes, "holding the converted attention of " + std::to_string(c.layers) + " layers", original.source);

    Model converted = original;
    converted.config = target;
    std::vector<MatrixRM> hiddenOriginal, hiddenConverted;
    for (const auto& seq : calibration.sequences) {
        hiddenOriginal.push_back(base.embed(seq));
        hiddenConverted.push_back(hiddenOriginal.back());
    }
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const double done = 0.5 + 0.5 * static_cast<double>(l) / static_cast<double>(c.layers);
        job.progress(done, "converting layer " + std::to_string(l));
        job.checkCancelled();
        const LayerWeights& w = original.layers[static_cast<std::size_t>(l)];
        std::vector<MatrixRM> xo = normalised(hiddenOriginal, w.attnNorm, eps);
        std::vector<MatrixRM> xc = normalised(hiddenConverted, w.attnNorm, eps);
        const std::vector<MatrixRM> want = originalOutputs(original, w, xo);
        const DeepSeekLayerInputs in = deepSeekLayerInputs(xc, xo);

        LayerWeights best;
        DeepSeekLayerReport bestReport;
        double bestError = std::numeric_limits<double>::infinity();
        for (bool balanced : balanceChoices(settings)) {
            DeepSeekLayerReport report;
            LayerWeights built = buildDeepSeekLayer(backend, c, target, w, components[static_cast<std::size_t>(l)],
                                                    result.rope.slotComponents[static_cast<std::size_t>(l)], in, settings, balanced, report, job);
            const double e = relativeError(deepSeekOutputs(original, target, built, xc), want);
            if (e < bestError) {
                bestError = e;
                best = std::move(built);
                report.outputErrorInitial = report.outputErrorFinal = e;
                bestReport = report;
            }
        }
        bestReport.ropeCost = result.rope.layerCost[static_cast<std::size_t>(l)];
        if (settings.refit) {
            // o_proj by least squares from the converted context to the original attention output (no bias: the
            // engines load none).
            std::vector<MatrixRM> contexts;
            deepSeekOutputs(original, target, best, xc, &contexts);
            LeastSquaresFit fit(target.attentionOutputDim(), c.hidden);
            for (std::size_t s = 0; s < contexts.size(); ++s)
                fit.add(contexts[s], want[s]);
            best.o = Tensor::fromMatrix(fit.solve(w.o.toMatrix(), settings.refitRidge));
            bestReport.outputErrorFinal = relativeError(deepSeekOutputs(original, target, best, xc), want);
        }
        result.layers.push_back(bestReport);
        converted.layers[static_cast<std::size_t>(l)] = best;

        const Transformer originalLayer(singleLayerModel(original, w, std::nullopt), MlaForm::Expanded);
        const Transformer convertedLayer(singleDeepSeekLayerModel(original, target, best), MlaForm::Expanded);
        for (std::size_t s = 0; s < hiddenOriginal.size(); ++s) {
            originalLayer.runLayer(0, hiddenOriginal[s]);
            convertedLayer.runLayer(0, hiddenConverted[s]);
        }
    }
    job.progress(1.0, "converted");
    result.model = std::move(converted);
    return result;
}

} // namespace mla
