#include "jobs/session_job.h"

#include "util/error.h"

#ifdef MLA_HAVE_SESSIONS
#include "session/session.h"
#endif

namespace mla {

bool sessionsAvailable()
{
#ifdef MLA_HAVE_SESSIONS
    return true;
#else
    return false;
#endif
}

void SessionJob::save(const SessionContent& content, const QString& path, bool force)
{
    run<QString>(
        tr("Saving session"),
        [content, path, force](const JobControl& job) -> QString {
#ifdef MLA_HAVE_SESSIONS
            Session s;
            s.analysis = *content.analysis;
            s.settings = content.settings;
            s.sanity = content.sanity;
            s.modelConfigJson = configToHuggingFace(content.analysis->config).dump();
            s.parameterCount = content.parameterCount;
            OutputOptions output;
            output.force = force;
            saveSession(s, path.toStdString(), job, output);
            return path;
#else
            (void)content;
            (void)job;
            (void)force;
            throw Error(path.toStdString(), "sessions are not available in this build");
#endif
        },
        [this](QString&& p) { Q_EMIT saved(p); });
}

void SessionJob::load(const QString& path)
{
    run<SessionContent>(
        tr("Opening session"),
        [path](const JobControl& job) -> SessionContent {
            job.progress(0.0, "reading the session");
#ifdef MLA_HAVE_SESSIONS
            Session s = loadSession(path.toStdString());
            SessionContent c;
            c.analysis = std::make_shared<const AnalysisResult>(std::move(s.analysis));
            c.settings = s.settings;
            c.sanity = s.sanity;
            c.parameterCount = s.parameterCount;
            return c;
#else
            throw Error(path.toStdString(), "sessions are not available in this build");
#endif
        },
        [this, path](SessionContent&& c) { Q_EMIT loaded(path, c); });
}

} // namespace mla
