#include "pipeline/sessions.h"

#include "analysis/analyzer.h"
#include "model/model_files.h"
#include "util/error.h"

#include <vector>

namespace mla::pipeline {

void saveSession(const SessionContent& content, const Model* model, const std::filesystem::path& file, const ExecutionContext& context,
                 const OutputOptions& output)
{
    if (!content.analysis)
        throw Error(file, "internal: a session needs an analysis (or an empty one)");
    Session s;
    s.analysis = *content.analysis;
    // Stored absolute, so the session finds its model from any folder (older files hold the path as it was given).
    if (!s.analysis.modelPath.empty()) {
        std::error_code ec;
        const std::filesystem::path given = s.analysis.modelPath;
        if (given.is_relative() && std::filesystem::exists(given, ec)) {
            const std::filesystem::path absolute = std::filesystem::absolute(given, ec);
            if (!ec)
                s.analysis.modelPath = absolute.lexically_normal().string();
        }
    }
    s.settings = content.settings;
    s.sanity = content.sanity;
    s.heal = content.heal;
    s.parameterCount = content.parameterCount;
    if (model)
        s.modelConfigJson = model->sourceConfigJson ? model->sourceConfigJson->dump() : configToHuggingFace(model->config).dump();
    else
        s.modelConfigJson = configToHuggingFace(content.analysis->config).dump();
    OutputOptions options = output;
    if (model) {
        for (auto& f : modelInputFiles(*model))
            options.inputs.push_back(std::move(f));
    }
    mla::saveSession(s, file, context.job(), options);
}

Session openSession(const std::filesystem::path& file, const ExecutionContext& context)
{
    context.job().progress(0.0, "reading the session");
    Session s = loadSession(file);
    context.job().progress(1.0, "session read");
    return s;
}

SessionContent sessionContent(Session&& s)
{
    SessionContent c;
    c.settings = std::move(s.settings);
    c.sanity = std::move(s.sanity);
    c.heal = std::move(s.heal);
    c.parameterCount = s.parameterCount;
    c.schemaVersion = s.schemaVersion;
    c.calibrationStored = s.schemaVersion >= 2;
    c.analysis = std::make_shared<const AnalysisResult>(std::move(s.analysis));
    return c;
}

std::optional<std::filesystem::path> locateSessionModel(const std::filesystem::path& sessionFile, const std::string& stored)
{
    if (stored.empty())
        return std::nullopt;
    std::error_code ec;
    const std::filesystem::path path = stored;
    std::vector<std::filesystem::path> candidates{path};
    if (path.is_relative()) // an older session: relative to where the tool ran, or else to the session's folder
        candidates.push_back(sessionFile.parent_path() / path);
    for (const auto& c : candidates) {
        if (std::filesystem::exists(c, ec)) {
            const std::filesystem::path absolute = std::filesystem::absolute(c, ec);
            return ec ? c : absolute.lexically_normal();
        }
    }
    return std::nullopt;
}

std::string sessionModelWarning(const Session& session, const std::filesystem::path& model, const ExecutionContext& context)
{
    const OpenedModel opened = openModel({model, std::nullopt, false}, context);
    return sessionModelMismatch(session, *opened.model);
}

bool sessionMatchesModel(const SessionContent& content, const Model& model)
{
    return content.analysis && analysisMatchesModel(*content.analysis, model);
}

} // namespace mla::pipeline
