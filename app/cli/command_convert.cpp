#include "cli_common.h"
#include "commands.h"
#include "conversion_options.h"
#include "device_option.h"
#include "pipeline/convert.h"
#include "session/analysis_json.h"
#include "util/error.h"

#include <chrono>
#include <cmath>
#include <iostream>

namespace mla::cli {
namespace {

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
    pipeline::ExportRequest request;
    request.folder = *out;
    if (auto dtype = args.value("dtype")) {
        const auto parsed = dtypeFromUserName(*dtype);
        if (!parsed)
            throw UsageError{"--dtype must be f32, f16 or bf16"};
        request.dtype = *parsed;
    }
    request.shardBytes = static_cast<std::uint64_t>(args.integer("shard-mb", 1, 1 << 30).value_or(0)) << 20;
    request.output = outputOptions(args, &opened); // the pipeline refuses a bad folder before any work
    if (!pipeline::conversionNeedsAnalysis(settings.conversion) && calibrationGiven(args))
        std::cerr << "note: the " << ropeStrategyName(settings.conversion.strategy) << " strategy needs no calibration; ignoring it\n";
    std::optional<pipeline::CheckOptions> check;
    if (args.has("check"))
        check = pipeline::CheckOptions{};
    const pipeline::FolderOutcome result = pipeline::convertToFolder(opened, nullptr, settings, request, check, context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (const std::string& note : result.written.notes)
        std::cerr << "note: " << note << "\n";

    const pipeline::ConversionOutcome& conversion = result.conversion;
    const ExportReport& report = result.written.report;
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
    std::cout << "KV cache per token: " << originalKv << " -> " << c.kvElementsPerToken() << " elements ("
              << 100.0 * j["kv_saving"].get<double>() << "% saved), " << seconds << " s\n";
    if (const auto& checked = result.written.check)
        std::cout << "check: perplexity " << checked->report.originalPpl << " -> " << checked->report.convertedPpl << ", KL "
                  << checked->report.kl << " nats/token, top-1 agreement " << checked->report.top1Agreement << " (in README.md)\n";
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
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(deviceOption());
        o.push_back(jsonOption());
        return o;
    }();
    return {"convert",
            "[MODEL] --out DIR [--force] [--preset paper|best] [--rope-strategy high|low|uniform|2-norm|rotation-loss] [--rope-pairs P] "
            "[--svd joint|split|key|value|none] [--latent-dim D | --kv-saving F | --kv-budget N] [--sigma up|sqrt] "
            "[calibration] [--json]",
            "convert to Multi-head Latent Attention (partial RoPE + low-rank KV) and write the model",
            "Defaults: 2-norm selection calibrated on 16 sampled sequences, head_dim/16 pairs per head (at least 1), joint "
            "SVD, latent width for a 75% KV saving, singular values in the up projections. --preset best lets the tool "
            "choose pairs and latent per layer for the budget and refits the layers on calibration data. The folder "
            "appears only when complete; DIR must not exist or be empty, unless --force replaces an earlier output of "
            "this tool (swapped in only once the new one is complete).",
            options, 1, runConvert};
}

} // namespace mla::cli
