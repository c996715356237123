#include "analysis/analyzer.h"
#include "cli_common.h"
#include "commands.h"
#include "conversion/converter.h"
#include "conversion_options.h"
#include "util/error.h"

#include <chrono>
#include <iostream>

namespace mla::cli {
namespace {

int runConvert(const Arguments& args)
{
    const auto out = args.value("out");
    if (!out)
        throw UsageError{"--out DIR is required"};
    const auto started = std::chrono::steady_clock::now();
    OpenedModel opened = openModel(args);
    const Model& model = opened.model;
    ConversionSettings settings = settingsFrom(args, model.config);
    const JobControl job = terminalProgress(args);

    std::optional<AnalysisResult> analysis;
    if (ropeStrategyNeedsScores(settings.strategy) || settings.activationAware) {
        AnalysisOptions options;
        options.calibration = calibrationFrom(args);
        options.settings = settings;
        options.spectra = false;
        options.activationSpectra = false;
        analysis = analyzeModel(model, opened.tokenizer.get(), options, job.slice(0.0, 0.4));
    } else if (calibrationGiven(args)) {
        std::cerr << "note: the " << ropeStrategyName(settings.strategy) << " strategy needs no calibration; ignoring it\n";
    }
    const ConversionPlan plan = planConversion(model.config, settings, selectPairs(model.config, settings, analysis ? &*analysis : nullptr));

    ExportOptions exportOptions;
    exportOptions.folder = *out;
    if (auto dtype = args.value("dtype")) {
        const auto parsed = dtypeFromUserName(*dtype);
        if (!parsed)
            throw UsageError{"--dtype must be f32, f16 or bf16"};
        exportOptions.dtype = *parsed;
    }
    exportOptions.shardBytes = static_cast<std::uint64_t>(args.integer("shard-mb", 1, 1 << 30).value_or(0)) << 20;
    exportOptions.extraFiles = companionFiles(model);
    CovarianceProvider covariance;
    if (analysis && settings.activationAware)
        covariance = [&](std::int64_t l) { return &analysis->layers[static_cast<std::size_t>(l)].inputCovariance; };
    const ExportReport report = exportConvertedModel(model, plan, exportOptions, covariance, job.slice(analysis ? 0.4 : 0.0, 1.0));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    const ModelConfig& c = plan.converted;
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto& m = c.mla->layers[static_cast<std::size_t>(l)];
        const auto& r = report.layers[static_cast<std::size_t>(l)];
        layers.push_back({{"kept_pairs", m.keptPairs}, {"latent_dim", m.latentWidth()},
                          {"d_kv", static_cast<double>(m.latentWidth()) / static_cast<double>(c.kvHeads)},
                          {"kv_elements", m.cacheElements(c.kvHeads, c.headDim)},
                          {"relative_error", r.jointRelativeError}, {"key_relative_error", r.keyRelativeError},
                          {"value_relative_error", r.valueRelativeError}});
    }
    const std::int64_t originalKv = model.config.kvElementsPerToken();
    nlohmann::ordered_json j;
    j["out"] = *out;
    j["attention"] = "mla";
    j["rope_strategy"] = std::string(ropeStrategyName(settings.strategy));
    j["rope_pairs"] = c.mla->layers[0].ropePairs();
    j["rope_dims"] = 2 * c.mla->layers[0].ropePairs();
    j["svd"] = std::string(latentMethodName(settings.method));
    j["sigma"] = std::string(sigmaPlacementName(settings.sigma));
    j["latent_dim"] = c.mla->layers[0].latentWidth();
    j["d_kv"] = static_cast<double>(c.mla->layers[0].latentWidth()) / static_cast<double>(c.kvHeads);
    j["kv_elements_per_token"] = c.kvElementsPerToken();
    j["kv_elements_per_token_original"] = originalKv;
    j["kv_saving"] = 1.0 - static_cast<double>(c.kvElementsPerToken()) / static_cast<double>(originalKv);
    j["dtype"] = std::string(dtypeName(report.dtype));
    j["bytes_written"] = report.bytesWritten;
    j["seconds"] = seconds;
    if (analysis)
        j["calibration"] = {{"description", analysis->calibrationDescription}, {"tokens", analysis->calibrationTokens}};
    j["layers"] = layers;
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << "wrote " << *out << ": MLA with " << j["rope_pairs"].get<std::int64_t>() << " RoPE pairs per head ("
              << ropeStrategyName(settings.strategy) << "), " << latentMethodName(settings.method) << " latent "
              << j["latent_dim"].get<std::int64_t>() << " (d_kv " << j["d_kv"].get<double>() << ")\n"
              << "KV cache per token: " << originalKv << " -> " << c.kvElementsPerToken() << " elements ("
              << 100.0 * j["kv_saving"].get<double>() << "% saved), " << seconds << " s\n";
    return 0;
}

} // namespace

CommandSpec convertCommand()
{
    static std::vector<OptionSpec> options = [] {
        std::vector<OptionSpec> o{demoOption(), tokenizerOption(), {"out", "DIR", "output folder (Hugging Face layout, MHA2MLA tensor names)"}};
        for (const auto& s : settingsOptions())
            o.push_back(s);
        for (const auto& c : calibrationOptions())
            o.push_back(c);
        o.push_back({"dtype", "TYPE", "output weight dtype: f32, f16 or bf16 (default: as the input)"});
        o.push_back({"shard-mb", "M", "write safetensors shards of at most M MiB with an index"});
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(jsonOption());
        return o;
    }();
    return {"convert",
            "[MODEL] --out DIR [--rope-strategy high|low|uniform|2-norm] [--rope-pairs P] [--svd joint|split|key|value|none] "
            "[--latent-dim D] [--sigma up|sqrt] [calibration] [--json]",
            "convert to Multi-head Latent Attention (partial RoPE + low-rank KV) and write the model",
            "Defaults: 2-norm selection calibrated on 16 sampled sequences, head_dim/16 pairs per head (at least 1), joint "
            "SVD, latent width for a 75% KV saving, singular values in the up projections. The folder appears only when "
            "complete.",
            options, 1, runConvert};
}

} // namespace mla::cli
