#pragma once

#include "analysis/analysis_result.h"
#include "conversion/conversion_settings.h"
#include "conversion/sanity_check.h"
#include "heal/healer.h"
#include "settings/settings.h"
#include "util/job_control.h"
#include "util/output_safety.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace mla {

struct Model;

// A heal of the conversion (docs/healing.md) as the session keeps it: the settings it ran with and what it measured.
struct SessionHeal {
    HealOptions options;                 // steps, tokens, learning rate, seed, data source, ... as run
    std::string start;                   // the start healed: "paper", "allocated", a preset name or "converted"
    HealReport report;                   // per-layer held-out block loss before/after, the model's KL/PPL/top-1 before/after
    std::optional<SanityReport> sanity;  // the sanity check of the healed model (Session::sanity: of the unhealed one)
};

// Everything a user can save and reopen without the model: the analysis (with its calibration ids), the settings
// as they stand in the workbench (which may differ from the analysed ones: with the calibration of the next analysis
// and the layer locks), and the results of a conversion check.
struct Session {
    AnalysisResult analysis;       // layers empty: no analysis yet (then only the model and settings are stored)
    Settings settings;
    std::optional<SanityReport> sanity;
    std::optional<SessionHeal> heal; // schema 3; absent in older files
    std::string modelConfigJson;   // the original model's config, as JSON text
    std::int64_t parameterCount = 0; // of the original model; 0 when unknown (the summary then has no "params")
    std::string createdAt;         // ISO 8601, set on save
    std::string toolVersion;       // set on save
    int schemaVersion = 0;         // of the file it was read from (0 for a new session)
};

inline constexpr const char* kSessionFormatName = "mla-workbench-session";
inline constexpr int kSessionSchemaVersion = 6;

// A new session for an analysis of `model`: its config JSON and parameter count filled in, the workbench settings
// starting as the analysed ones (default calibration, nothing locked).
Session makeSession(const Model& model, AnalysisResult analysis);

// Writes an HDF5 session file (schema: docs/session-format.md) to a temporary name beside `path`, flushes it to disk
// and renames it into place when complete; a failed or cancelled save leaves any previous file untouched. Progress
// is reported per group and cancellation is checked between groups. The destination follows the output policy
// (util/output_safety.h): never the analysed model or another input, never a device, FIFO or link; an existing
// session (HDF5) file is replaced, any other existing file only with `output.force`.
void saveSession(const Session& session, const std::filesystem::path& path, const JobControl& job = {},
                 const OutputOptions& output = {});

// The same destination check, for callers that want to refuse before any long work (analyze --session).
void requireSessionDestination(const std::filesystem::path& path, const OutputOptions& output);
FileKind sessionFileKind();

// Reads a session. A damaged, truncated or foreign file, or a schema newer than this tool knows, is an mla::Error
// naming the file and the problem; older schemas are migrated (schema 1 stored no calibration settings and no locks:
// the calibration is the default, and a layer whose per-layer width differs from the global width is taken as
// locked, which is how the workbench made such widths; schemas 1 and 2 hold no heal).
// `memoryBudget`: what the arrays of the file may take in memory together (default: the memory available); a file
// declaring more is refused before anything is decompressed.
Session loadSession(const std::filesystem::path& path, std::optional<std::uint64_t> memoryBudget = std::nullopt);

// Empty when `model` is the model the session was made from (same config and tensor index); otherwise a one-line
// warning naming both fingerprints, for the GUI and CLI to show before using the weights with this session.
std::string sessionModelMismatch(const Session& session, const Model& model);

// The analyze --json keys present in a session, for `mla-workbench-cli session FILE --json`, plus "session"
// (format, schema, tool, created, fingerprint), "settings" (the workbench's) and "results" when a check was stored.
nlohmann::ordered_json sessionSummaryJson(const Session& session);

// HDF5 files, groups, datasets, attributes and datatypes open in this process, as the library counts them: the same
// before and after a save or load, also one that failed (tests use it to show that no error path leaks an object).
std::int64_t openHdf5Objects();

} // namespace mla
