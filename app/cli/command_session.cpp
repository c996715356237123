#include "cli_common.h"
#include "commands.h"
#include "pipeline/sessions.h"

#include <iomanip>
#include <iostream>

namespace mla::cli {
namespace {

void printText(const std::string& file, const Session& s, const nlohmann::ordered_json& j)
{
    const AnalysisResult& a = s.analysis;
    const ModelConfig& c = a.config;
    std::cout << "session         " << file << " (schema " << s.schemaVersion << ", MLA Workbench " << s.toolVersion
              << ", created " << s.createdAt << ")\n"
              << "model           " << a.modelPath << " (fingerprint " << a.modelFingerprint << ")\n"
              << "shape           " << c.architecture << ", " << c.layers << " layers, " << c.heads << " heads, " << c.kvHeads
              << " KV heads, head " << c.headDim << ", hidden " << c.hidden << ", vocab " << c.vocab << "\n";
    if (!a.layers.empty()) {
        std::cout << "calibration     " << a.calibrationDescription << " (" << a.calibrationTokens << " tokens)\n"
                  << "analysed with   " << ropeStrategyName(a.settings.strategy);
        if (j.contains("rope_pairs"))
            std::cout << ", " << j["rope_pairs"].get<std::int64_t>() << " pairs per head";
        std::cout << (a.hasActivationSpectra() ? ", weight and activation spectra" : ", weight spectra") << "\n";
        if (j.contains("kv")) {
            std::cout << "KV per token    " << j["kv"]["original_per_token"].get<std::int64_t>() << " -> "
                      << j["kv"]["converted_per_token"].get<std::int64_t>() << " elements (" << std::fixed
                      << std::setprecision(1) << 100.0 * j["kv"]["saving"].get<double>() << "% saved)\n";
            std::cout.unsetf(std::ios::floatfield);
        }
        if (j.contains("problem"))
            std::cout << "problem         " << j["problem"].get<std::string>() << "\n";
    } else {
        std::cout << "analysis        none\n";
    }
    const ConversionSettings& st = s.settings.conversion;
    std::cout << "settings        " << ropeStrategyName(st.strategy) << " RoPE pairs "
              << (st.ropePairs < 0 ? std::string("default") : std::to_string(st.ropePairs))
              << (st.ropePairsPerLayer.empty() ? "" : " (per layer)") << ", svd " << latentMethodName(st.method) << ", latent "
              << (st.latentDim < 0 ? "for " + std::to_string(static_cast<int>(st.targetSaving * 100 + 0.5)) + "% saving"
                                   : std::to_string(st.latentDim))
              << (st.latentPerLayer.empty() ? "" : " (per layer)") << ", sigma " << sigmaPlacementName(st.sigma)
              << (st.activationAware ? ", activation-aware" : "") << (st.refit ? ", refit" : "")
              << (st.preset.empty() ? "" : ", preset " + st.preset) << "\n";
    if (s.sanity) {
        const SanityReport& r = *s.sanity;
        std::cout << "check           perplexity " << r.originalPpl << " -> " << r.convertedPpl << ", KL " << r.kl
                  << " nats/token, top-1 agreement " << r.top1Agreement << " over " << r.evaluatedTokens << " tokens\n"
                  << "KV bytes/token  " << r.originalKvBytesPerToken << " -> " << r.convertedKvBytesPerToken << " (measured)\n";
    }
    if (s.heal) {
        const HealReport& r = s.heal->report;
        std::cout << "heal            " << r.layersHealed << " of " << c.layers << " layers from the " << s.heal->start << " start, "
                  << s.heal->options.steps << " steps per layer, " << r.trainTokens << " + " << r.heldOutTokens
                  << " held-out tokens, seed " << s.heal->options.seed << (r.cancelled ? " (stopped early)" : "") << "\n";
        if (r.before && r.after)
            std::cout << "heal held-out   KL " << r.before->kl << " -> " << r.after->kl << ", perplexity " << r.before->perplexity
                      << " -> " << r.after->perplexity << ", top-1 " << r.before->top1Agreement << " -> " << r.after->top1Agreement << "\n";
        if (s.heal->sanity)
            std::cout << "healed check    perplexity " << s.heal->sanity->originalPpl << " -> " << s.heal->sanity->convertedPpl
                      << ", KL " << s.heal->sanity->kl << " nats/token, top-1 agreement " << s.heal->sanity->top1Agreement << "\n";
    }
}

int runSession(const Arguments& args)
{
    const auto file = args.positional(0);
    if (!file)
        throw UsageError{"give the session FILE.h5 to read"};
    const ExecutionContext context;
    const Session session = pipeline::openSession(*file, context);
    if (auto modelPath = args.value("model")) {
        const std::string warning = pipeline::sessionModelWarning(session, *modelPath, context);
        if (!warning.empty())
            std::cerr << "warning: " << warning << "\n";
    }
    const nlohmann::ordered_json summary = sessionSummaryJson(session);
    if (args.has("json")) {
        printJson(summary);
        return 0;
    }
    printText(*file, session, summary);
    return 0;
}

} // namespace

CommandSpec sessionCommand()
{
    return {"session", "FILE.h5 [--model MODEL] [--json]",
            "print the summary of a saved session (no model needed)",
            "Reads a session written by 'analyze --session FILE.h5' or by the workbench (schema: docs/session-format.md). "
            "--json prints the keys of 'analyze --json' that the session holds (rope_scores, rope_scores_q, kept_pairs, "
            "spectra, error_curves, kv_elements_per_token, kv, params, ...) plus session, settings and results. "
            "With --model, warns when MODEL is not the model the session was made from. A damaged or foreign file is "
            "an error (exit 1).",
            {{"model", "MODEL", "check that MODEL is the model the session was made from"}, jsonOption()},
            1, runSession};
}

} // namespace mla::cli
