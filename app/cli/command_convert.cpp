#include "cli_common.h"
#include "commands.h"
#include "conversion/deepseek_export.h"
#include "conversion_options.h"
#include "device_option.h"
#include "kv_cache_option.h"
#include "gguf_report.h"
#include "heal_flags.h"
#include "pipeline/convert.h"
#include "pipeline/export_gguf.h"
#include "pipeline/heal.h"
#include "session/analysis_json.h"
#include "util/error.h"

#include <chrono>
#include <cmath>
#include <iostream>

namespace mla::cli {
namespace {

// --check, with the cache format of the converted model it measures next to float32 (--kv-cache, --kv-cache-rope,
// --kv-cache-group), which mean nothing without it.
std::optional<pipeline::CheckOptions> checkOptionsFrom(const Arguments& args)
{
    const bool cacheGiven = args.has("kv-cache") || args.has("kv-cache-rope") || args.has("kv-cache-group");
    if (!args.has("check")) {
        if (cacheGiven)
            throw UsageError{"--kv-cache sets the KV cache format of the check: add --check"};
        return std::nullopt;
    }
    pipeline::CheckOptions options;
    options.cacheFormat = kvCacheFormatFrom(args);
    return options;
}

// The check's line about the KV cache format it was asked for (--kv-cache).
void printCacheCheck(const SanityReport& r)
{
    std::cout << "check with a " << r.withCache.format << " KV cache: perplexity " << r.withCache.ppl << ", KL " << r.withCache.kl
              << ", top-1 agreement " << r.withCache.top1Agreement << ", " << r.withCache.kvBytesPerToken << " bytes per token: "
              << 100.0 * r.combinedSaving() << "% less KV cache than the original in BF16\n";
}

// One line per healed layer on stderr (unless --quiet), so that a long heal shows where it is even without a terminal.
pipeline::HealStartObserver healLayerPrinter(const Arguments& args, std::int64_t layers)
{
    if (args.has("quiet"))
        return {};
    return [layers](const HealProgress& p, const std::string& start) {
        if (!p.finished)
            return;
        const LayerHealReport& r = *p.finished;
        std::cerr << "heal" << (start.empty() ? std::string() : " [" + start + "]") << " layer " << (r.layer + 1) << "/" << layers
                  << ": held-out loss " << r.heldOutBefore << " -> " << r.heldOutAfter << " (" << r.steps << " steps"
                  << (r.stoppedEarly ? ", stopped early" : "") << ", " << r.seconds << " s)\n";
    };
}

// --format gguf: one file for llama.cpp, the DeepSeek-V3 target written as its deepseek2 architecture.
int runConvertToGguf(const Arguments& args, const pipeline::OpenedModel& opened, const Settings& settings,
                     const ExecutionContext& context, std::chrono::steady_clock::time_point started)
{
    if (settings.conversion.target != ConversionTarget::DeepSeekV3)
        throw UsageError{"--format gguf needs --target deepseek-v3: llama.cpp runs MLA as its deepseek2 architecture, "
                         "which has the DeepSeek-V3 layout (the mha2mla layout has no llama.cpp architecture)"};
    if (args.has("shard-mb"))
        throw UsageError{"--shard-mb applies to the safetensors folder, not to one GGUF file"};
    GgufExportOptions options = ggufOptionsFrom(args, *args.value("out"));
    options.otherInputs = outputOptions(args, &opened).inputs; // calibration and evaluation files named
    const std::optional<pipeline::CheckOptions> check = checkOptionsFrom(args);
    const pipeline::GgufConversionOutcome result = pipeline::convertToGguf(opened, nullptr, settings, options, check, context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const pipeline::ConversionOutcome& conversion = result.conversion;
    const SanityReport* checked = result.check ? &result.check->report : nullptr;
    ExportReport asWritten;
    asWritten.bytesWritten = result.written.bytesWritten;
    nlohmann::ordered_json j = {{"out", result.written.file.string()}};
    j.update(deepSeekExportJson(*conversion.deepSeek, conversion.plan.converted, opened.model->config, asWritten, checked));
    j.update(ggufReportJson(result.written));
    j["seconds"] = seconds;
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << deepSeekExportSummary(*conversion.deepSeek, conversion.plan.converted, opened.model->config, checked);
    if (checked)
        printCacheCheck(*checked);
    printGgufReport(result.written);
    return 0;
}

int runConvert(const Arguments& args)
{
    const auto backend = backendFromDeviceOption(args);
    const auto out = args.value("out");
    if (!out)
        throw UsageError{"--out DIR is required"};
    const auto started = std::chrono::steady_clock::now();
    const JobControl job = terminalProgress(args);
    const ExecutionContext context(backend, job);
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext(backend));
    const Model& model = *opened.model;
    const Settings settings = settingsFrom(args, model.config);
    const std::string format = args.valueOr("format", "safetensors");
    if (format != "safetensors" && format != "gguf")
        throw UsageError{"--format must be safetensors (a Hugging Face folder, the default) or gguf (one file for llama.cpp)"};
    const std::optional<HealFlags> heal = healFlagsFrom(args);
    if (heal && format == "gguf")
        throw UsageError{"--heal works on the mha2mla layout only, which has no GGUF export; drop --heal or --format gguf"};
    if (format == "gguf")
        return runConvertToGguf(args, opened, settings, context, started);
    if (heal && settings.conversion.target == ConversionTarget::DeepSeekV3)
        throw UsageError{"--heal works on the mha2mla layout only; drop it or --target deepseek-v3"};
    if (heal && heal->start == HealStart::Allocated && !settings.conversion.allocate)
        throw UsageError{"--heal-start allocated needs an allocated conversion (--preset best, --allocate or --kv-budget)"};
    pipeline::ExportRequest request;
    request.folder = *out;
    if (auto dtype = args.value("dtype")) {
        const auto parsed = dtypeFromUserName(*dtype);
        if (!parsed)
            throw UsageError{"--dtype must be f32, f16 or bf16"};
        request.dtype = *parsed;
    }
    request.shardBytes = static_cast<std::uint64_t>(args.integer("shard-mb", 1, 1 << 30).value_or(0)) << 20;
    request.pipelined = !args.has("no-pipeline");
    request.output = outputOptions(args, &opened); // the pipeline refuses a bad folder before any work
    if (!pipeline::conversionNeedsAnalysis(settings.conversion) && calibrationGiven(args))
        std::cerr << "note: the " << ropeStrategyName(settings.conversion.strategy) << " strategy needs no calibration; ignoring it\n";
    const std::optional<pipeline::CheckOptions> check = checkOptionsFrom(args);
    std::optional<pipeline::HealedFolderOutcome> healed;
    if (heal) {
        healed = pipeline::convertHealToFolder(opened, nullptr, settings, {heal->options, heal->start, 0}, request, check, context,
                                               healLayerPrinter(args, model.config.layers));
        for (const std::string& note : healed->notes)
            std::cerr << "note: " << note << "\n";
    }
    const pipeline::FolderOutcome result =
        healed ? healed->folder : pipeline::convertToFolder(opened, nullptr, settings, request, check, context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (const std::string& note : result.written.notes)
        std::cerr << "note: " << note << "\n";

    const pipeline::ConversionOutcome& conversion = result.conversion;
    const ExportReport& report = result.written.report;
    if (conversion.deepSeek) {
        const SanityReport* checked = result.written.check ? &result.written.check->report : nullptr;
        nlohmann::ordered_json j = {{"out", *out}};
        j.update(deepSeekExportJson(*conversion.deepSeek, conversion.plan.converted, model.config, report, checked));
        j["seconds"] = seconds;
        if (args.has("json"))
            printJson(j);
        else
            std::cout << "wrote " << *out << ": " << deepSeekExportSummary(*conversion.deepSeek, conversion.plan.converted, model.config, checked);
        if (checked && !args.has("json"))
            printCacheCheck(*checked);
        return 0;
    }
    const ConversionSettings& converted = conversion.plan.settings;
    const ModelConfig& c = conversion.plan.converted;
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
        if (static_cast<std::size_t>(l) < conversion.fits.size()) {
            const auto& f = conversion.fits[static_cast<std::size_t>(l)];
            layer["output_error_initial"] = f.outputErrorInitial;
            layer["output_error_final"] = f.outputErrorFinal;
            layer["balanced"] = f.balanced;
            layer["fit_tokens"] = f.tokens;
        }
        layers.push_back(layer);
    }
    const std::int64_t originalKv = model.config.kvElementsPerToken();
    nlohmann::ordered_json j;
    j["out"] = *out;
    j["attention"] = "mla";
    j["preset"] = converted.preset;
    j["rope_strategy"] = std::string(ropeStrategyName(converted.strategy));
    j["rope_pairs"] = c.mla->layers[0].ropePairs();
    j["rope_dims"] = 2 * c.mla->layers[0].ropePairs();
    j["svd"] = std::string(latentMethodName(converted.method));
    j["sigma"] = std::string(sigmaPlacementName(converted.sigma));
    j["decomposition"] = std::string(decompositionMethodName(converted.decomposition));
    if (const auto& d = conversion.decompositionCheck)
        j["decomposition_check"] = decompositionCheckJson(*d);
    j["activation_aware"] = converted.activationAware;
    j["refit"] = converted.refit;
    j["latent_dim"] = c.mla->layers[0].latentWidth();
    j["d_kv"] = static_cast<double>(c.mla->layers[0].latentWidth()) / static_cast<double>(c.kvHeads);
    j["kv_elements_per_token"] = c.kvElementsPerToken();
    j["kv_elements_per_token_original"] = originalKv;
    j["kv_saving"] = 1.0 - static_cast<double>(c.kvElementsPerToken()) / static_cast<double>(originalKv);
    j["dtype"] = std::string(dtypeName(report.dtype));
    j["bytes_written"] = report.bytesWritten;
    j["seconds"] = seconds;
    if (conversion.analysis)
        j["calibration"] = {{"description", conversion.analysis->calibrationDescription}, {"tokens", conversion.analysis->calibrationTokens}};
    if (const auto& a = conversion.allocation)
        j["allocation"] = {{"budget", conversion.allocationBudget}, {"elements", a->elements}, {"predicted_cost", a->totalCost},
                           {"pairs", a->pairs}, {"latent", a->latent}, {"cost", a->cost}};
    j["layers"] = layers;
    if (healed)
        j["heal"] = healResultJson(healed->heal);
    if (result.written.check)
        j["check"] = sanityJson(result.written.check->report);
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << "wrote " << *out << (converted.preset.empty() ? "" : " (preset " + converted.preset + ")") << ": MLA with "
              << ropeStrategyName(converted.strategy) << " partial RoPE and a " << latentMethodName(converted.method) << " latent\n";
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const auto& m = c.mla->layers[static_cast<std::size_t>(l)];
        std::cout << "  layer " << l << ": " << m.ropePairs() << " pairs per head, latent " << m.latentWidth() << " (d_kv "
                  << static_cast<double>(m.latentWidth()) / static_cast<double>(c.kvHeads) << ")\n";
    }
    if (const auto& d = conversion.decompositionCheck)
        std::cout << decompositionCheckSummary(*d) << "\n";
    if (!conversion.fits.empty() && conversion.analysis)
        std::cout << "refitted layer by layer on " << conversion.fits.front().tokens << " of the " << conversion.analysis->calibrationTokens
                  << " calibration tokens (--refit-tokens)\n";
    std::cout << "KV cache per token: " << originalKv << " -> " << c.kvElementsPerToken() << " elements ("
              << 100.0 * j["kv_saving"].get<double>() << "% saved), " << seconds << " s\n";
    if (healed) {
        const HealConvertedResult& h = healed->heal;
        const HealReport& r = h.healed.report;
        std::cout << "healed " << r.layersHealed << " layers from the " << h.start << " start (" << h.options.steps
                  << " steps per layer, " << r.trainTokens << " tokens, " << r.seconds << " s)";
        if (r.before && r.after)
            std::cout << ": held-out KL " << r.before->kl << " -> " << r.after->kl << ", perplexity " << r.before->perplexity << " -> "
                      << r.after->perplexity << ", top-1 " << r.before->top1Agreement << " -> " << r.after->top1Agreement;
        std::cout << "\n";
        if (h.choice)
            for (const auto& p : h.choice->probes)
                std::cout << "  start " << p.name << ": held-out KL " << p.klUnhealed << " -> " << p.klProbe << "\n";
    }
    if (const auto& checked = result.written.check)
        std::cout << "check: perplexity " << checked->report.originalPpl << " -> " << checked->report.convertedPpl << ", KL "
                  << checked->report.kl << " nats/token, top-1 agreement " << checked->report.top1Agreement << " (in README.md)\n";
    if (const auto& checked = result.written.check)
        printCacheCheck(checked->report);
    return 0;
}

} // namespace

CommandSpec convertCommand()
{
    static std::vector<OptionSpec> options = [] {
        std::vector<OptionSpec> o{demoOption(), tokenizerOption(), {"out", "DIR", "output folder (Hugging Face layout, MHA2MLA tensor names); must be new or empty; with --format gguf, the .gguf file"},
                                  {"format", "FORMAT", "safetensors (a Hugging Face folder, the default) or gguf (one file for llama.cpp; needs --target deepseek-v3)"},
                                  {"name", "NAME", "with --format gguf: general.name in the file (default: the input's name + \" (MLA)\")"},
                                  forceOption("replace DIR when it holds an earlier output of this tool (never an input, never a folder with other files)")};
        for (const auto& s : settingsOptions())
            o.push_back(s);
        for (const auto& c : calibrationOptions())
            o.push_back(c);
        o.push_back({"dtype", "TYPE", "output weight dtype: f32, f16 or bf16 (default: as the input); with --format gguf also q8_0 or q4_0"});
        o.push_back({"shard-mb", "M", "write safetensors shards of at most M MiB with an index"});
        o.push_back({"no-pipeline", nullptr, "read, convert and write one layer after another instead of overlapping them "
                                             "across layers (the same bytes, slower; a reference for benchmarks)"});
        o.push_back({"check", nullptr, "reload the written model and measure it against the original (perplexity, KL, "
                                       "top-1 agreement, KV bytes) on 4 sampled sequences; the numbers go into README.md"});
        o.push_back(kvCacheOption());
        o.push_back(kvCacheRopeOption());
        o.push_back(kvCacheGroupOption());
        for (const auto& h : healOptions())
            o.push_back(h);
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(deviceOption());
        o.push_back(jsonOption());
        return o;
    }();
    return {"convert",
            "[MODEL] --out DIR [--force] [--target mha2mla|deepseek-v3 [--flashmla] [--format safetensors|gguf]] [--preset paper|best] [--rope-strategy high|low|uniform|2-norm|rotation-loss] [--rope-pairs P] "
            "[--svd joint|split|key|value|none] [--latent-dim D | --kv-saving F | --kv-budget N] [--sigma up|sqrt] "
            "[calibration] [--heal [--heal-steps N] [--heal-lr X] [--heal-tokens N] [--heal-seed S] [--heal-text FILE | --heal-ids FILE] "
            "[--heal-start auto|paper|allocated]] [--json]",
            "convert to Multi-head Latent Attention (partial RoPE + low-rank KV) and write the model",
            "Defaults: 2-norm selection calibrated on 16 sampled sequences, head_dim/16 pairs per head (at least 1), joint "
            "SVD, latent width for a 75% KV saving, singular values in the up projections. --preset best lets the tool "
            "choose pairs and latent per layer for the budget and refits the layers on calibration data. The folder "
            "appears only when complete; DIR must not exist or be empty, unless --force replaces an earlier output of "
            "this tool (swapped in only once the new one is complete). --target deepseek-v3 writes the DeepSeek-V3 layout "
            "(DeepseekV3ForCausalLM) that stock transformers, vLLM and SGLang load: one shared RoPE head and one latent width "
            "for every layer, fitted on calibration data (docs/deepseek-export.md); with --format gguf --out FILE.gguf it is written "
            "as one GGUF file of llama.cpp's deepseek2 architecture, which llama.cpp serves with its latent cache "
            "(docs/gguf.md). --heal then trains the converted attention layer by layer "
            "to reproduce the original's block outputs (docs/healing.md) before writing.",
            options, 1, runConvert};
}

} // namespace mla::cli
