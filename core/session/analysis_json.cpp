#include "session/analysis_json.h"

#include "model/rope.h"

namespace mla {
namespace {

nlohmann::ordered_json matrixRows(const MatrixXdRM& m)
{
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
        std::vector<double> row(m.row(r).data(), m.row(r).data() + m.cols());
        rows.push_back(row);
    }
    return rows;
}

nlohmann::ordered_json spectraJson(const AnalysisResult& a, bool activation)
{
    nlohmann::ordered_json joint = nlohmann::ordered_json::array(), key = nlohmann::ordered_json::array(),
                           value = nlohmann::ordered_json::array();
    for (const auto& l : a.layers) {
        const KeyValueSpectra& s = activation ? l.activationSpectra : l.weightSpectra;
        joint.push_back(s.joint);
        key.push_back(s.key);
        value.push_back(s.value);
    }
    return {{"joint", joint}, {"key", key}, {"value", value}};
}

nlohmann::ordered_json errorCurvesJson(const AnalysisResult& a)
{
    nlohmann::ordered_json joint = nlohmann::ordered_json::array(), key = nlohmann::ordered_json::array(),
                           value = nlohmann::ordered_json::array();
    for (const auto& l : a.layers) {
        joint.push_back(l.weightSpectra.jointError);
        key.push_back(l.weightSpectra.keyError);
        value.push_back(l.weightSpectra.valueError);
    }
    return {{"joint", joint}, {"key", key}, {"value", value}};
}

} // namespace

nlohmann::ordered_json analysisJson(const AnalysisResult& a, const ConversionPreview& preview, bool withParams)
{
    const ModelConfig& c = a.config;
    nlohmann::ordered_json j;
    j["model"] = a.modelPath;
    j["calibration"] = {{"source", a.calibrationSource}, {"description", a.calibrationDescription},
                        {"sequences", a.calibrationIds.size()}, {"tokens", a.calibrationTokens}};
    j["rope_strategy"] = std::string(ropeStrategyName(a.settings.strategy));
    j["rope_pairs"] = preview.layers.empty() ? 0 : preview.layers[0].ropePairs;
    j["rope_dims"] = preview.layers.empty() ? 0 : 2 * preview.layers[0].ropePairs;
    const auto freqs = ropeFrequencies(c.rope, c.headDim);
    std::vector<double> wavelengths;
    for (float f : freqs)
        wavelengths.push_back(ropeWavelength(f));
    j["rope_frequencies"] = std::vector<double>(freqs.begin(), freqs.end());
    j["rope_wavelengths"] = wavelengths;

    nlohmann::ordered_json scores = nlohmann::ordered_json::array(), scoresQ = nlohmann::ordered_json::array(),
                           loss = nlohmann::ordered_json::array(), kept = nlohmann::ordered_json::array(),
                           qNorm = nlohmann::ordered_json::array(), kNorm = nlohmann::ordered_json::array();
    for (const auto& l : a.layers) {
        scores.push_back(matrixRows(l.scores.perKvHead));
        scoresQ.push_back(matrixRows(l.scores.perQuery));
        loss.push_back(matrixRows(l.scores.rotationLoss));
        qNorm.push_back(matrixRows(l.scores.queryNorm));
        kNorm.push_back(matrixRows(l.scores.keyNorm));
        kept.push_back(l.selection);
    }
    j["rope_scores"] = scores;
    j["rope_scores_q"] = scoresQ;
    j["rotation_loss"] = loss;
    j["query_pair_norms"] = qNorm;
    j["key_pair_norms"] = kNorm;
    j["kept_pairs"] = kept;
    j["spectra"] = spectraJson(a, false);
    if (a.hasActivationSpectra())
        j["spectra_activation"] = spectraJson(a, true);
    j["error_curves"] = errorCurvesJson(a);

    j["kv_elements_per_token"] = preview.kv.convertedTotal;
    j["kv_elements_per_token_original"] = preview.kv.originalTotal;
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (std::size_t l = 0; l < preview.layers.size(); ++l) {
        const auto& p = preview.layers[l];
        layers.push_back({{"rope_pairs", p.ropePairs}, {"latent_dim", p.latentK + p.latentV}, {"d_kv", static_cast<double>(p.latentK + p.latentV) / static_cast<double>(c.kvHeads)},
                          {"kv_elements_original", p.kvOriginal}, {"kv_elements", p.kvConverted},
                          {"predicted_error", p.weightError},
                          {"predicted_activation_error", p.activationError >= 0 ? nlohmann::ordered_json(p.activationError) : nlohmann::ordered_json()},
                          {"rotation_loss_dropped", p.rotationLoss}, {"two_norm_dropped_fraction", p.twoNormDropped}});
    }
    nlohmann::ordered_json kv;
    kv["original_per_token"] = preview.kv.originalTotal;
    kv["converted_per_token"] = preview.kv.convertedTotal;
    kv["saving"] = preview.kv.saving();
    for (CacheFormat f : {CacheFormat::F32, CacheFormat::BF16, CacheFormat::Int8, CacheFormat::Int4}) {
        kv["bytes_per_token_" + std::string(cacheFormatName(f))] = {{"original", preview.kv.originalBytesPerToken(f)},
                                                                    {"converted", preview.kv.convertedBytesPerToken(f)}};
    }
    kv["quantisation_group_size"] = 64;
    kv["layers"] = layers;
    j["kv"] = kv;
    if (withParams)
        j["params"] = {{"original", preview.paramsOriginal}, {"converted", preview.paramsConverted}};
    return j;
}

nlohmann::ordered_json sanityJson(const SanityReport& r)
{
    nlohmann::ordered_json j;
    j["original_ppl"] = r.originalPpl;
    j["converted_ppl"] = r.convertedPpl;
    j["kl"] = r.kl;
    j["top1_agreement"] = r.top1Agreement;
    j["evaluated_tokens"] = r.evaluatedTokens;
    j["original_kv_bytes_per_token"] = r.originalKvBytesPerToken;
    j["converted_kv_bytes_per_token"] = r.convertedKvBytesPerToken;
    j["kv_cache"] = r.withCache.format;
    j["kv_cache_quality"] = {{"ppl", r.withCache.ppl}, {"kl", r.withCache.kl}, {"top1_agreement", r.withCache.top1Agreement},
                             {"kv_bytes_per_token", r.withCache.kvBytesPerToken}};
    j["original_bf16_kv_bytes_per_token"] = r.originalBf16KvBytesPerToken;
    j["combined_kv_saving"] = r.combinedSaving();
    nlohmann::ordered_json generations = nlohmann::ordered_json::array();
    for (const auto& g : r.generations) {
        generations.push_back({{"prompt", g.prompt}, {"original_ids", g.originalIds}, {"converted_ids", g.convertedIds},
                               {"original_text", g.originalText}, {"converted_text", g.convertedText},
                               {"first_difference", g.firstDifference}});
    }
    j["generations"] = generations;
    return j;
}

} // namespace mla
