#include "analysis/analyzer.h"
#include "cli_common.h"
#include "commands.h"
#include "conversion/budget_allocation.h"
#include "conversion/converter.h"
#include "conversion/deepseek_export.h"
#include "conversion/model_card.h"
#include "conversion/presets.h"
#include "conversion/sequential_converter.h"
#include "conversion_options.h"
#include "device_option.h"
#include "session/analysis_json.h"
#include "util/error.h"

#include <chrono>
#include <cmath>
#include <iostream>

namespace mla::cli {
namespace {

std::int64_t budgetFor(const ConversionSettings& s, const ModelConfig& c)
{
    if (s.kvBudget > 0)
        return s.kvBudget;
    if (!(s.targetSaving > 0.0 && s.targetSaving < 1.0))
        throw Error("the KV saving must be between 0 and 1");
    return static_cast<std::int64_t>(std::llround((1.0 - s.targetSaving) * static_cast<double>(c.kvElementsPerToken())));
}

int runConvert(const Arguments& args)
{
    applyDeviceOption(args);
    const auto out = args.value("out");
    if (!out)
        throw UsageError{"--out DIR is required"};
    const auto started = std::chrono::steady_clock::now();
    OpenedModel opened = openModel(args);
    const Model& model = opened.model;
    ConversionSettings settings = settingsFrom(args, model.config);
    const JobControl job = terminalProgress(args);
    const bool calibrationPass = settingsNeedCalibrationPass(settings);

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
    if (settings.target == ConversionTarget::DeepSeekV3) {
        const DeepSeekExport e = exportDeepSeekTarget(model, opened.tokenizer.get(), settings, calibrationFrom(args), exportOptions,
                                                      args.has("check"), job);
        nlohmann::ordered_json j = {{"out", *out}};
        j.update(deepSeekExportJson(e, model.config));
        j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (args.has("json"))
            printJson(j);
        else
            std::cout << "wrote " << *out << ": " << deepSeekExportSummary(e, model.config);
        return 0;
    }

    std::optional<AnalysisResult> analysis;
    if (ropeStrategyNeedsScores(settings.strategy) || calibrationPass) {
        AnalysisOptions options;
        options.calibration = calibrationFrom(args);
        options.settings = settings;
        options.settings.ropePairsPerLayer.clear();
        if (options.settings.ropePairs < 0 && settings.allocate)
            options.settings.ropePairs = defaultRopePairs(model.config);
        options.spectra = false;
        options.activationSpectra = false;
        analysis = analyzeModel(model, opened.tokenizer.get(), options, job.slice(0.0, 0.2));
    } else if (calibrationGiven(args)) {
        std::cerr << "note: the " << ropeStrategyName(settings.strategy) << " strategy needs no calibration; ignoring it\n";
    }
    CalibrationSet calibration;
    if (analysis) {
        calibration.sequences = analysis->calibrationIds;
        calibration.description = analysis->calibrationDescription;
    }

    nlohmann::ordered_json allocationJson;
    if (settings.allocate) {
        AllocationOptions a;
        a.budget = budgetFor(settings, model.config);
        a.strategy = settings.strategy;
        a.activationAware = settings.activationAware;
        auto candidates = measureAllocationCandidates(model, *analysis, calibration, a, job.slice(0.2, 0.5));
        if (settings.ropePairs >= 0) {
            for (auto& layer : candidates)
                std::erase_if(layer, [&](const AllocationCandidate& c) { return c.pairs != settings.ropePairs; });
        }
        const Allocation allocation = allocateBudget(candidates, a.budget);
        settings.ropePairsPerLayer = allocation.pairs;
        settings.latentPerLayer = allocation.latent;
        allocationJson = {{"budget", a.budget}, {"elements", allocation.elements}, {"predicted_cost", allocation.totalCost},
                          {"pairs", allocation.pairs}, {"latent", allocation.latent}, {"cost", allocation.cost}};
    }
    const ConversionPlan plan = planConversion(model.config, settings, selectPairs(model.config, settings, analysis ? &*analysis : nullptr));

    ModelCardInfo card{model.source.string(), model.format, model.config, plan.converted, settings,
                       analysis ? analysis->calibrationDescription : std::string(), analysis ? analysis->calibrationTokens : 0,
                       exportOptions.dtype.value_or(model.layers[0].q.dtype()), exportOptions.shardBytes, std::nullopt, {}};
    exportOptions.generatedFiles.emplace_back("README.md", modelCardMarkdown(card));
    ExportReport report;
    std::vector<LayerFitReport> fits;
    const JobControl writeJob = job.slice(settings.allocate ? 0.5 : (analysis ? 0.2 : 0.0), 1.0);
    if (calibrationPass)
        report = exportSequentially(model, plan, calibration, exportOptions, writeJob, &fits);
    else
        report = exportConvertedModel(model, plan, exportOptions, {}, writeJob);
    std::optional<SanityReport> check;
    if (args.has("check"))
        check = checkExportedModel(model, opened.tokenizer.get(), *out, card, {}, job);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    const ModelConfig& c = plan.converted;
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto& m = c.mla->layers[static_cast<std::size_t>(l)];
        nlohmann::ordered_json layer = {{"kept_pairs", m.keptPairs}, {"latent_dim", m.latentWidth()},
                                        {"d_kv", static_cast<double>(m.latentWidth()) / static_cast<double>(c.kvHeads)},
                                        {"kv_elements", m.cacheElements(c.kvHeads, c.headDim)}};
        if (static_cast<std::size_t>(l) < report.layers.size()) {
            const auto& r = report.layers[static_cast<std::size_t>(l)];
            layer["relative_error"] = r.jointRelativeError;
            layer["key_relative_error"] = r.keyRelativeError;
            layer["value_relative_error"] = r.valueRelativeError;
        }
        if (static_cast<std::size_t>(l) < fits.size()) {
            const auto& f = fits[static_cast<std::size_t>(l)];
            layer["output_error_initial"] = f.outputErrorInitial;
            layer["output_error_final"] = f.outputErrorFinal;
            layer["balanced"] = f.balanced;
        }
        layers.push_back(layer);
    }
    const std::int64_t originalKv = model.config.kvElementsPerToken();
    nlohmann::ordered_json j;
    j["out"] = *out;
    j["attention"] = "mla";
    j["preset"] = settings.preset;
    j["rope_strategy"] = std::string(ropeStrategyName(settings.strategy));
    j["rope_pairs"] = c.mla->layers[0].ropePairs();
    j["rope_dims"] = 2 * c.mla->layers[0].ropePairs();
    j["svd"] = std::string(latentMethodName(settings.method));
    j["sigma"] = std::string(sigmaPlacementName(settings.sigma));
    j["activation_aware"] = settings.activationAware;
    j["refit"] = settings.refit;
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
    if (!allocationJson.is_null())
        j["allocation"] = allocationJson;
    j["layers"] = layers;
    if (check)
        j["check"] = sanityJson(*check);
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << "wrote " << *out << (settings.preset.empty() ? "" : " (preset " + settings.preset + ")") << ": MLA with "
              << ropeStrategyName(settings.strategy) << " partial RoPE and a " << latentMethodName(settings.method) << " latent\n";
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto& m = c.mla->layers[static_cast<std::size_t>(l)];
        std::cout << "  layer " << l << ": " << m.ropePairs() << " pairs per head, latent " << m.latentWidth() << " (d_kv "
                  << static_cast<double>(m.latentWidth()) / static_cast<double>(c.kvHeads) << ")\n";
    }
    std::cout << "KV cache per token: " << originalKv << " -> " << c.kvElementsPerToken() << " elements ("
              << 100.0 * j["kv_saving"].get<double>() << "% saved), " << seconds << " s\n";
    if (check)
        std::cout << "check: perplexity " << check->originalPpl << " -> " << check->convertedPpl << ", KL " << check->kl
                  << " nats/token, top-1 agreement " << check->top1Agreement << " (in README.md)\n";
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
        o.push_back({"target", "LAYOUT", "mha2mla (default: the MHA2MLA research layout) or deepseek-v3 (the DeepSeek-V3 layout "
                                         "stock transformers, vLLM and SGLang serve; --rope-pairs then counts the pairs of its "
                                         "one shared RoPE head and --latent-dim is kv_lora_rank)"});
        o.push_back({"flashmla", nullptr, "deepseek-v3: kv_lora_rank 512 + qk_rope_head_dim 64, the only shape FlashMLA runs"});
        o.push_back({"dtype", "TYPE", "output weight dtype: f32, f16 or bf16 (default: as the input)"});
        o.push_back({"shard-mb", "M", "write safetensors shards of at most M MiB with an index"});
        o.push_back({"check", nullptr, "reload the written model and measure it against the original (perplexity, KL, "
                                       "top-1 agreement, KV bytes) on 4 sampled sequences; the numbers go into README.md"});
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(deviceOption());
        o.push_back(jsonOption());
        return o;
    }();
    return {"convert",
            "[MODEL] --out DIR [--target mha2mla|deepseek-v3 [--flashmla]] [--preset paper|best] [--rope-strategy high|low|uniform|2-norm|rotation-loss] [--rope-pairs P] "
            "[--svd joint|split|key|value|none] [--latent-dim D | --kv-saving F | --kv-budget N] [--sigma up|sqrt] "
            "[calibration] [--json]",
            "convert to Multi-head Latent Attention (partial RoPE + low-rank KV) and write the model",
            "Defaults: 2-norm selection calibrated on 16 sampled sequences, head_dim/16 pairs per head (at least 1), joint "
            "SVD, latent width for a 75% KV saving, singular values in the up projections. --preset best lets the tool "
            "choose pairs and latent per layer for the budget and refits the layers on calibration data. The folder "
            "appears only when complete.",
            options, 1, runConvert};
}

} // namespace mla::cli
