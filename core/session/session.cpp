#include "session/session.h"

#include "analysis/analyzer.h"
#include "conversion/preview.h"
#include "heal/heal_converted.h"
#include "model/model.h"
#include "session/analysis_json.h"

namespace mla {

Session makeSession(const Model& model, AnalysisResult analysis)
{
    Session s;
    s.settings.conversion = analysis.settings;
    s.analysis = std::move(analysis);
    s.modelConfigJson = model.sourceConfigJson ? model.sourceConfigJson->dump() : configToHuggingFace(model.config).dump();
    s.parameterCount = model.parameterCount();
    return s;
}

std::string sessionModelMismatch(const Session& session, const Model& model)
{
    const std::string fingerprint = modelFingerprint(model);
    if (fingerprint == session.analysis.modelFingerprint)
        return {};
    return "the model " + model.source.string() + " (fingerprint " + fingerprint + ") is not the one this session was made from ("
           + (session.analysis.modelPath.empty() ? std::string("unknown path") : session.analysis.modelPath) + ", fingerprint "
           + (session.analysis.modelFingerprint.empty() ? std::string("none") : session.analysis.modelFingerprint)
           + "): its config or tensors differ, so the stored analysis may not apply to it";
}

nlohmann::ordered_json sessionSummaryJson(const Session& session)
{
    const AnalysisResult& a = session.analysis;
    nlohmann::ordered_json j;
    if (!a.layers.empty()) {
        // The analysed settings, as `analyze` previewed them when it wrote the session.
        const ConversionPreview preview = previewConversion(a, a.settings, session.parameterCount);
        if (preview.problem.empty()) {
            j = analysisJson(a, preview, session.parameterCount > 0);
        } else {
            j["model"] = a.modelPath;
            j["problem"] = preview.problem;
        }
    } else {
        j["model"] = a.modelPath;
    }
    j["session"] = {{"format", kSessionFormatName},
                    {"schema_version", session.schemaVersion},
                    {"tool_version", session.toolVersion},
                    {"created", session.createdAt},
                    {"model_fingerprint", a.modelFingerprint},
                    {"analysed", !a.layers.empty()}};
    j["settings"] = settingsJson(session.settings, SettingScope::Workbench);
    if (session.sanity)
        j["results"] = sanityJson(*session.sanity);
    if (session.heal) {
        // The same keys as `convert --heal --json`'s "heal" object, plus the check of the healed model.
        HealConvertedResult r;
        r.options = session.heal->options;
        r.start = session.heal->start;
        r.healed.report = session.heal->report;
        j["heal"] = healResultJson(r);
        if (session.heal->sanity)
            j["heal"]["sanity"] = sanityJson(*session.heal->sanity);
    }
    return j;
}

} // namespace mla
