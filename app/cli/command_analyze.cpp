#include "cli_common.h"
#include "commands.h"
#include "conversion/preview.h"
#include "conversion_options.h"
#include "device_option.h"
#include "pipeline/analyse.h"
#include "pipeline/sessions.h"
#include "session/analysis_json.h"
#include "util/error.h"

#include <iomanip>
#include <iostream>

namespace mla::cli {
namespace {

int runAnalyze(const Arguments& args)
{
    const ExecutionContext context(backendFromDeviceOption(args), terminalProgress(args));
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext(context.sharedBackend()));
    const Model& model = *opened.model;
    const OutputOptions output = outputOptions(args, &opened);
    if (auto sessionFile = args.value("session"))
        requireSessionDestination(*sessionFile, output); // before the analysis, not after it
    const Settings settings = settingsFrom(args, model.config);
    const pipeline::AnalysisPtr analysis = pipeline::analyse(opened, settings, context);
    const AnalysisResult& a = *analysis;
    const ConversionPreview preview = previewConversion(a, settings.conversion, model.parameterCount());
    if (!preview.problem.empty())
        throw Error(preview.problem);
    if (auto sessionFile = args.value("session")) {
        // Saved before anything is printed, so a failed save is an error exit with no half-reported result.
        pipeline::saveSession({analysis, settings, std::nullopt, model.parameterCount()}, &model, *sessionFile, context, output);
        if (!args.has("json") && !args.has("quiet"))
            std::cerr << "session saved to " << *sessionFile << "\n";
    }
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
        o.push_back({"session", "FILE.h5", "also save the analysis as a session file (read it back with 'session FILE.h5')"});
        o.push_back(forceOption("let --session replace an existing file that is not a session file"));
        o.push_back({"quiet", nullptr, "no progress output"});
        o.push_back(deviceOption());
        o.push_back(jsonOption());
        return o;
    }();
    return {"analyze", "[MODEL] [calibration] [--rope-strategy S] [--rope-pairs P] [--session FILE.h5] [--json]",
            "score every RoPE frequency pair, select the kept pairs and compute key/value spectra and KV accounting",
            "Calibration defaults to 16 sequences sampled from the model. JSON keys: rope_scores [layer][kv_head][pair] "
            "(paper-compatible 2-norm), rope_scores_q [layer][head][pair], rotation_loss, kept_pairs [layer][kv_head][...], "
            "spectra {joint, key, value: [layer][singular values]}, spectra_activation, error_curves, "
            "kv_elements_per_token (of the planned conversion; kv_elements_per_token_original for the model as it is), kv, params.",
            options, 1, runAnalyze};
}

} // namespace mla::cli
