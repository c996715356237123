#include "conversion/preview.h"

#include "util/error.h"

#include <cmath>

namespace mla {
namespace {

double errorAt(const std::vector<double>& curve, std::int64_t rank)
{
    if (curve.empty())
        return 0.0;
    const std::size_t k = static_cast<std::size_t>(std::clamp<std::int64_t>(rank, 0, static_cast<std::int64_t>(curve.size()) - 1));
    return curve[k];
}

double energy(const std::vector<double>& s)
{
    double e = 0.0;
    for (double v : s)
        e += v * v;
    return e;
}

std::int64_t attentionParams(const ModelConfig& c, const MlaLayerConfig* m)
{
    const std::int64_t q = c.qDim() * c.hidden + (c.qkvBias ? c.qDim() : 0);
    if (!m)
        return q + 2 * (c.kvDim() * c.hidden + (c.qkvBias ? c.kvDim() : 0));
    const std::int64_t r = 2 * m->ropePairs();
    const std::int64_t nope = c.kvHeads * (c.headDim - r);
    const std::int64_t bias = c.qkvBias ? 1 : 0;
    std::int64_t n = q + c.kvHeads * r * (c.hidden + bias);
    const std::int64_t keyIn = m->compressesKeys() ? m->latentK : c.hidden;
    const std::int64_t valueIn = m->method == LatentMethod::Joint ? m->latentK : (m->compressesValues() ? m->latentV : c.hidden);
    n += m->latentWidth() * c.hidden;
    n += nope * (keyIn + bias) + c.kvDim() * (valueIn + bias);
    return n;
}

} // namespace

double predictedError(const KeyValueSpectra& s, LatentMethod method, std::int64_t latentK, std::int64_t latentV)
{
    switch (method) {
    case LatentMethod::Joint:
        return errorAt(s.jointError, latentK);
    case LatentMethod::None:
        return 0.0;
    default:
        break;
    }
    const double ek = energy(s.key);
    const double ev = energy(s.value);
    const double total = ek + ev;
    if (total <= 0.0)
        return 0.0;
    const double keyErr = method == LatentMethod::Value ? 0.0 : errorAt(s.keyError, latentK);
    const double valueErr = method == LatentMethod::Key ? 0.0 : errorAt(s.valueError, latentV);
    return std::sqrt((keyErr * keyErr * ek + valueErr * valueErr * ev) / total);
}

ConversionPreview previewConversion(const AnalysisResult& analysis, const ConversionSettings& settings, std::int64_t parameterCount)
{
    const ModelConfig& c = analysis.config;
    ConversionPreview p;
    std::vector<MlaLayerConfig> layers;
    try {
        // Selections follow the analysis's scores; for the same strategy and pair count they are the analysed ones.
        std::vector<LayerPairSelection> selections;
        for (std::int64_t l = 0; l < c.layers; ++l) {
            const auto& la = analysis.layers[static_cast<std::size_t>(l)];
            selections.push_back(selectLayerPairs(c, settings.strategy, ropePairsForLayer(c, settings, l), settings.uniformStart, &la.scores));
            if (selections.back() != la.selection)
                p.selectionMatchesAnalysis = false;
        }
        layers = resolveLayerConfigs(c, settings, selections);
    } catch (const Error& e) {
        p.problem = e.what();
        return p;
    }
    p.kv = kvAccount(c, layers);
    p.paramsOriginal = parameterCount;
    p.paramsConverted = parameterCount;
    double weightSum = 0.0, activationSum = 0.0;
    bool activation = analysis.hasActivationSpectra();
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto& la = analysis.layers[static_cast<std::size_t>(l)];
        const MlaLayerConfig& m = layers[static_cast<std::size_t>(l)];
        LayerPreview lp;
        lp.ropePairs = m.ropePairs();
        lp.latentK = m.latentK;
        lp.latentV = m.latentV;
        lp.weightError = predictedError(la.weightSpectra, m.method, m.latentK, m.latentV);
        if (activation)
            lp.activationError = predictedError(la.activationSpectra, m.method, m.latentK, m.latentV);
        double twoNormTotal = 0.0, twoNormDropped = 0.0;
        for (std::int64_t kv = 0; kv < c.kvHeads; ++kv) {
            const auto& kept = m.keptPairs[static_cast<std::size_t>(kv)];
            for (std::int64_t j = 0; j < c.headDim / 2; ++j) {
                const bool isKept = std::find(kept.begin(), kept.end(), static_cast<int>(j)) != kept.end();
                twoNormTotal += la.scores.perKvHead(kv, j);
                if (!isKept) {
                    twoNormDropped += la.scores.perKvHead(kv, j);
                    lp.rotationLoss += la.scores.rotationLoss(kv, j);
                }
            }
        }
        lp.twoNormDropped = twoNormTotal > 0 ? twoNormDropped / twoNormTotal : 0.0;
        lp.kvOriginal = p.kv.originalPerLayer[static_cast<std::size_t>(l)];
        lp.kvConverted = p.kv.convertedPerLayer[static_cast<std::size_t>(l)];
        lp.attentionParamsOriginal = attentionParams(c, nullptr);
        lp.attentionParamsConverted = attentionParams(c, &m);
        p.paramsConverted += lp.attentionParamsConverted - lp.attentionParamsOriginal;
        weightSum += lp.weightError;
        activationSum += lp.activationError;
        p.layers.push_back(lp);
    }
    p.meanWeightError = weightSum / static_cast<double>(c.layers);
    p.meanActivationError = activation ? activationSum / static_cast<double>(c.layers) : -1.0;
    return p;
}

ConversionPreview previewWithoutAnalysis(const ModelConfig& config, const ConversionSettings& settings, std::int64_t parameterCount)
{
    ConversionPreview p;
    p.paramsOriginal = parameterCount;
    p.paramsConverted = -1;
    p.meanWeightError = -1.0;
    p.meanActivationError = -1.0;
    std::vector<MlaLayerConfig> layers;
    try {
        std::vector<LayerPairSelection> selections;
        for (std::int64_t l = 0; l < config.layers; ++l)
            selections.push_back(selectLayerPairs(config, RopeStrategy::High, ropePairsForLayer(config, settings, l), 0, nullptr));
        layers = resolveLayerConfigs(config, settings, selections);
    } catch (const Error& e) {
        p.problem = e.what();
        return p;
    }
    p.kv = kvAccount(config, layers);
    for (std::size_t l = 0; l < layers.size(); ++l) {
        LayerPreview lp;
        lp.ropePairs = layers[l].ropePairs();
        lp.latentK = layers[l].latentK;
        lp.latentV = layers[l].latentV;
        lp.weightError = -1.0;
        lp.activationError = -1.0;
        lp.rotationLoss = -1.0;
        lp.twoNormDropped = -1.0;
        lp.kvOriginal = p.kv.originalPerLayer[l];
        lp.kvConverted = p.kv.convertedPerLayer[l];
        p.layers.push_back(lp);
    }
    return p;
}

ConversionPreview previewSettings(const ModelConfig& config, const AnalysisResult* analysis, const ConversionSettings& settings,
                                  std::int64_t parameterCount)
{
    return analysis ? previewConversion(*analysis, settings, parameterCount) : previewWithoutAnalysis(config, settings, parameterCount);
}

} // namespace mla
