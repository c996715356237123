#include "analysis/analyzer.h"
#include "cli_common.h"
#include "commands.h"
#include "conversion/preview.h"
#include "conversion_options.h"
#include "model/rope.h"

#include <iomanip>
#include <iostream>

namespace mla::cli {
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

nlohmann::ordered_json analysisJson(const AnalysisResult& a, const ConversionPreview& preview)
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
    j["params"] = {{"original", preview.paramsOriginal}, {"converted", preview.paramsConverted}};
    return j;
}

int runAnalyze(const Arguments& args)
{
    OpenedModel opened = openModel(args);
    AnalysisOptions options;
    options.calibration = calibrationFrom(args);
    options.settings = settingsFrom(args, opened.model.config);
    const AnalysisResult a = analyzeModel(opened.model, opened.tokenizer.get(), options, terminalProgress(args));
    const ConversionPreview preview = previewConversion(a, options.settings, opened.model.parameterCount());
    if (!preview.problem.empty())
        throw Error(preview.problem);
    if (args.has("json")) {
        printJson(analysisJson(a, preview));
        return 0;
    }
    const ModelConfig& c = a.config;
    std::cout << "calibration     " << a.calibrationDescription << " (" << a.calibrationTokens << " tokens)\n"
              << "strategy        " << ropeStrategyName(a.settings.strategy) << ", " << preview.layers[0].ropePairs
              << " pairs per head (" << 2 * preview.layers[0].ropePairs << " of " << c.headDim << " dims keep RoPE)\n"
              << "KV per token    " << preview.kv.originalTotal << " -> " << preview.kv.convertedTotal << " elements ("
              << std::fixed << std::setprecision(1) << 100.0 * preview.kv.saving() << "% saved)\n\n"
              << "layer  kept pairs (per KV head)          latent  d_kv   weight err  activation err\n";
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        std::string kept;
        for (const auto& head : a.layers[l].selection) {
            kept += "[";
            for (std::size_t i = 0; i < head.size(); ++i)
                kept += (i ? "," : "") + std::to_string(head[i]);
            kept += "]";
        }
        const auto& p = preview.layers[l];
        std::cout << std::setw(5) << l << "  " << std::left << std::setw(34) << kept.substr(0, 34) << std::right << std::setw(6)
                  << p.latentK + p.latentV << std::setw(6) << std::setprecision(1)
                  << static_cast<double>(p.latentK + p.latentV) / static_cast<double>(c.kvHeads) << std::setprecision(4)
                  << std::setw(13) << p.weightError << std::setw(16) << p.activationError << "\n";
    }
    return 0;
}

} // namespace

CommandSpec analyzeCommand()
{
    static std::vector<OptionSpec> options = [] {
        std::vector<OptionSpec> o{demoOption(), tokenizerOption()};
        for (const auto& c : calibrationOptions())
            o.push_back(c);
        for (const auto& s : settingsOptions())
            o.push_back(s);
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(jsonOption());
        return o;
    }();
    return {"analyze", "[MODEL] [calibration] [--rope-strategy S] [--rope-pairs P] [--json]",
            "score every RoPE frequency pair, select the kept pairs and compute key/value spectra and KV accounting",
            "Calibration defaults to 16 sequences sampled from the model. JSON keys: rope_scores [layer][kv_head][pair] "
            "(paper-compatible 2-norm), rope_scores_q [layer][head][pair], rotation_loss, kept_pairs [layer][kv_head][...], "
            "spectra {joint, key, value: [layer][singular values]}, spectra_activation, error_curves, "
            "kv_elements_per_token (of the planned conversion; kv_elements_per_token_original for the model as it is), kv, params.",
            options, 1, runAnalyze};
}

} // namespace mla::cli
