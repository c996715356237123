#include "analysis/analyzer.h"
#include "cli_common.h"
#include "commands.h"
#include "conversion/budget_allocation.h"
#include "conversion/converter.h"
#include "conversion/model_card.h"
#include "conversion/presets.h"
#include "conversion/sequential_converter.h"
#include "conversion/settings_validation.h"
#include "conversion_options.h"
#include "device_option.h"
#include "engine/transformer.h"
#include "heal/heal_converted.h"
#include "heal/heal_data.h"
#include "heal_flags.h"
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

// The `paper` start of --heal-start auto|paper: the paper preset at the same KV budget as the allocated conversion.
ConversionPlan paperPlanFor(const Model& model, const ConversionSettings& asked, const AnalysisResult* analysis)
{
    ConversionSettings p;
    applyPreset("paper", p);
    p.targetSaving = asked.kvBudget > 0 ? 1.0 - static_cast<double>(asked.kvBudget) / static_cast<double>(model.config.kvElementsPerToken())
                                        : asked.targetSaving;
    try {
        validateConversionSettings(model.config, p);
        return planConversion(model.config, p, selectPairs(model.config, p, analysis));
    } catch (const Error& e) {
        // The default head_dim/16 pairs may leave no room for a latent at this saving (as in docs/results.md).
        std::cerr << "note: paper start: " << e.what() << "; using 0 RoPE pairs\n";
        p.ropePairs = 0;
        validateConversionSettings(model.config, p);
        return planConversion(model.config, p, selectPairs(model.config, p, analysis));
    }
}

// One line per healed layer on stderr (unless --quiet), so that a long heal shows where it is even without a terminal.
HealObserver healLayerPrinter(const Arguments& args, const std::vector<HealStartCandidate>& starts, std::int64_t layers)
{
    if (args.has("quiet"))
        return {};
    return [&starts, layers](const HealProgress& p) {
        if (!p.finished)
            return;
        const LayerHealReport& r = *p.finished;
        std::cerr << "heal" << (starts.size() > 1 ? " [" + starts[p.start].name + "]" : std::string()) << " layer " << (r.layer + 1)
                  << "/" << layers << ": held-out loss " << r.heldOutBefore << " -> " << r.heldOutAfter << " (" << r.steps
                  << " steps" << (r.stoppedEarly ? ", stopped early" : "") << ", " << r.seconds << " s)\n";
    };
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
    // Refused here, before any calibration or conversion, when the folder may not be written.
    const OutputOptions output = outputOptions(args, &opened);
    requireOutputFolder(*out, output);
    ConversionSettings settings = settingsFrom(args, model.config);
    const std::optional<HealFlags> heal = healFlagsFrom(args);
    if (heal && heal->start == HealStart::Allocated && !settings.allocate)
        throw UsageError{"--heal-start allocated needs an allocated conversion (--preset best, --allocate or --kv-budget)"};
    const JobControl job = terminalProgress(args);
    // The healing data before any conversion work: a bad --heal-ids / --heal-text file is refused here.
    std::optional<HealData> healData;
    if (heal)
        healData = prepareHealData(Transformer(model), opened.tokenizer.get(), heal->options, job.slice(0.0, 0.05));
    const bool calibrationPass = settingsNeedCalibrationPass(settings);

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
    ConversionPlan plan = planConversion(model.config, settings, selectPairs(model.config, settings, analysis ? &*analysis : nullptr));

    // --heal: the conversion(s) in memory, healed; the chosen one is what gets written.
    std::vector<LayerFitReport> fits;
    std::vector<LayerConversionReport> conversionReports;
    std::optional<HealConvertedResult> healed;
    if (heal) {
        const JobControl convertJob = job.slice(settings.allocate ? 0.5 : 0.2, 0.6);
        const Model asked = calibrationPass ? convertSequentially(model, plan, calibration, convertJob, &fits)
                                            : convertModel(model, plan, {}, DType::F32, convertJob, &conversionReports);
        const HealStart start = heal->start.value_or(HealStart::Allocated);
        std::optional<ConversionPlan> paperPlan;
        std::optional<Model> paperModel;
        std::vector<LayerConversionReport> paperReports;
        std::vector<HealStartCandidate> starts;
        if (settings.allocate && start != HealStart::Allocated) {
            paperPlan = paperPlanFor(model, settings, analysis ? &*analysis : nullptr);
            paperModel = convertModel(model, *paperPlan, {}, DType::F32, convertJob, &paperReports);
            starts.push_back({"paper", &*paperModel});
        } else if (start == HealStart::Auto) {
            std::cerr << "note: --heal-start auto: the conversion has one latent width for every layer (not allocated), so "
                         "there is no other start to compare; healing it as converted\n";
        }
        if (start != HealStart::Paper || !settings.allocate)
            starts.push_back({settings.allocate ? "allocated" : (settings.preset.empty() ? "converted" : settings.preset), &asked});
        healed = healConvertedModel(model, starts, *healData, heal->options, 0, job.slice(0.6, 0.95),
                                    healLayerPrinter(args, starts, model.config.layers));
        if (healed->healed.report.cancelled)
            throw Cancelled();
        if (paperModel && starts[healed->chosen].model == &*paperModel) {
            // The paper start won (or was asked for): the export is the paper conversion, healed.
            plan = *paperPlan;
            settings = plan.settings;
            fits.clear();
            conversionReports = paperReports;
            allocationJson = nullptr;
        }
    }

    ExportOptions exportOptions;
    exportOptions.folder = *out;
    if (auto dtype = args.value("dtype")) {
        const auto parsed = dtypeFromUserName(*dtype);
        if (!parsed)
            throw UsageError{"--dtype must be f32, f16 or bf16"};
        exportOptions.dtype = *parsed;
    }
    exportOptions.shardBytes = static_cast<std::uint64_t>(args.integer("shard-mb", 1, 1 << 30).value_or(0)) << 20;
    std::vector<std::string> skipped;
    exportOptions.extraFiles = companionFiles(model, &skipped);
    for (const auto& line : skipped)
        std::cerr << "note: " << line << "\n";
    exportOptions.output = output;
    // A healed model holds float32 attention tensors: write it in the input's dtype unless asked otherwise.
    if (healed && !exportOptions.dtype)
        exportOptions.dtype = model.layers[0].q.dtype();
    ModelCardInfo card{model.source.string(), model.format, model.config, plan.converted, settings,
                       analysis ? analysis->calibrationDescription : std::string(), analysis ? analysis->calibrationTokens : 0,
                       exportOptions.dtype.value_or(model.layers[0].q.dtype()), exportOptions.shardBytes, std::nullopt, {}, std::nullopt};
    if (healed)
        card.heal = healCardInfo(*healed);
    exportOptions.generatedFiles.emplace_back("README.md", modelCardMarkdown(card));
    ExportReport report;
    const JobControl writeJob = job.slice(healed ? 0.95 : settings.allocate ? 0.5 : (analysis ? 0.2 : 0.0), 1.0);
    if (healed) {
        report = exportModel(healed->healed.model, exportOptions, writeJob);
        report.layers = conversionReports;
    } else if (calibrationPass)
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
    if (healed)
        j["heal"] = healResultJson(*healed);
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
    if (healed) {
        const HealReport& h = healed->healed.report;
        std::cout << "healed " << h.layersHealed << " layers from the " << healed->start << " start (" << healed->options.steps
                  << " steps per layer, " << h.trainTokens << " tokens, " << h.seconds << " s)";
        if (h.before && h.after)
            std::cout << ": held-out KL " << h.before->kl << " -> " << h.after->kl << ", perplexity " << h.before->perplexity
                      << " -> " << h.after->perplexity << ", top-1 " << h.before->top1Agreement << " -> " << h.after->top1Agreement;
        std::cout << "\n";
        if (healed->choice)
            for (const auto& p : healed->choice->probes)
                std::cout << "  start " << p.name << ": held-out KL " << p.klUnhealed << " -> " << p.klProbe << "\n";
    }
    if (check)
        std::cout << "check: perplexity " << check->originalPpl << " -> " << check->convertedPpl << ", KL " << check->kl
                  << " nats/token, top-1 agreement " << check->top1Agreement << " (in README.md)\n";
    return 0;
}

} // namespace

CommandSpec convertCommand()
{
    static std::vector<OptionSpec> options = [] {
        std::vector<OptionSpec> o{demoOption(), tokenizerOption(), {"out", "DIR", "output folder (Hugging Face layout, MHA2MLA tensor names); must be new or empty"},
                                  forceOption("replace DIR when it holds an earlier output of this tool (never an input, never a folder with other files)")};
        for (const auto& s : settingsOptions())
            o.push_back(s);
        for (const auto& c : calibrationOptions())
            o.push_back(c);
        o.push_back({"dtype", "TYPE", "output weight dtype: f32, f16 or bf16 (default: as the input)"});
        o.push_back({"shard-mb", "M", "write safetensors shards of at most M MiB with an index"});
        o.push_back({"check", nullptr, "reload the written model and measure it against the original (perplexity, KL, "
                                       "top-1 agreement, KV bytes) on 4 sampled sequences; the numbers go into README.md"});
        for (const auto& h : healOptions())
            o.push_back(h);
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(deviceOption());
        o.push_back(jsonOption());
        return o;
    }();
    return {"convert",
            "[MODEL] --out DIR [--force] [--preset paper|best] [--rope-strategy high|low|uniform|2-norm|rotation-loss] [--rope-pairs P] "
            "[--svd joint|split|key|value|none] [--latent-dim D | --kv-saving F | --kv-budget N] [--sigma up|sqrt] "
            "[calibration] [--heal [--heal-steps N] [--heal-lr X] [--heal-tokens N] [--heal-seed S] [--heal-text FILE | --heal-ids FILE] "
            "[--heal-start auto|paper|allocated]] [--json]",
            "convert to Multi-head Latent Attention (partial RoPE + low-rank KV) and write the model",
            "Defaults: 2-norm selection calibrated on 16 sampled sequences, head_dim/16 pairs per head (at least 1), joint "
            "SVD, latent width for a 75% KV saving, singular values in the up projections. --preset best lets the tool "
            "choose pairs and latent per layer for the budget and refits the layers on calibration data. The folder "
            "appears only when complete; DIR must not exist or be empty, unless --force replaces an earlier output of "
            "this tool (swapped in only once the new one is complete). --heal then trains the converted attention layer by layer "
            "to reproduce the original's block outputs (docs/healing.md) before writing.",
            options, 1, runConvert};
}

} // namespace mla::cli
