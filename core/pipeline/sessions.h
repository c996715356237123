#pragma once

#include "conversion/sanity_check.h"
#include "pipeline/analyse.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"
#include "session/session.h"
#include "settings/settings.h"

#include <filesystem>
#include <optional>

namespace mla::pipeline {

// What a user saves and reopens without the model: the analysis, the settings as they stand and the last check.
struct SessionContent {
    AnalysisPtr analysis;                 // may hold no layers: a session saved before any analysis
    Settings settings;
    std::optional<SanityReport> sanity;   // the check of the conversion (unhealed)
    std::int64_t parameterCount = 0;      // of the original model; 0 when unknown
    bool calibrationStored = true;        // false for files older than schema 2: settings.calibration is the default
    int schemaVersion = 0;                // of the file it was read from
    std::optional<SessionHeal> heal = std::nullopt; // the heal and the check of the healed model (schema 3)
};

// Save session (CLI analyze --session, the workbench's Save Session). `model`, when open, gives the checkpoint's own
// config.json for the file. The destination follows the output policy (util/output_safety.h, session/session.h): never
// the model or another input, an existing session file is replaced, any other file only with `output.force`.
void saveSession(const SessionContent& content, const Model* model, const std::filesystem::path& file, const ExecutionContext& context,
                 const OutputOptions& output = {});

// Open session (CLI session, the workbench's Open Session): a damaged, foreign or newer file is an error naming it;
// older schemas are migrated.
Session openSession(const std::filesystem::path& file, const ExecutionContext& context);
// The part of an opened session the workbench holds (the analysis shared, so jobs can use it).
SessionContent sessionContent(Session&& session);

// Where the model a session was made from is now: its stored path (absolute since sessions store it so; an older
// session's relative path is tried from the current folder, then from the session's folder), made absolute; nothing
// when it is not there (the workbench then offers to locate it).
std::optional<std::filesystem::path> locateSessionModel(const std::filesystem::path& sessionFile, const std::string& stored);

// CLI session --model: opens the weights of `model` and returns a one-line warning when they are not the model the
// session was made from (empty when they are).
std::string sessionModelWarning(const Session& session, const std::filesystem::path& model, const ExecutionContext& context);
// Whether the session's analysis was made from `model` (the workbench keeps the open model then).
bool sessionMatchesModel(const SessionContent& content, const Model& model);

} // namespace mla::pipeline
