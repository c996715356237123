#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Save Session / Open Session (pipeline::saveSession, pipeline::openSession; the file is core's HDF5 session).
class SessionJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    // `model`, when open, gives the checkpoint's own config.json for the file. `force`: replace an existing file that
    // is not a session (the window asks the user first).
    void save(const SessionContent& content, const std::shared_ptr<const Model>& model, const QString& path, bool force = false);
    void load(const QString& path);

Q_SIGNALS:
    void saved(const QString& path);
    void loaded(const QString& path, const mla::SessionContent& content);
};

} // namespace mla
