#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

#include <optional>

namespace mla {

// What the workbench saves in a session file and gets back from one. The file itself is core's (session/session.h);
// this build may predate it, in which case sessionsAvailable() is false and the jobs fail with a clear message.
struct SessionContent {
    AnalysisPtr analysis;
    ConversionSettings settings;
    std::optional<SanityReport> sanity;
    std::int64_t parameterCount = 0; // of the original model
};

bool sessionsAvailable();

class SessionJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    // `force`: replace an existing file that is not a session (the window asks the user first).
    void save(const SessionContent& content, const QString& path, bool force = false);
    void load(const QString& path);

Q_SIGNALS:
    void saved(const QString& path);
    void loaded(const QString& path, const mla::SessionContent& content);
};

} // namespace mla

Q_DECLARE_METATYPE(mla::SessionContent)
