#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Writes the converted model as a Hugging Face folder in the MHA2MLA layout (core's exportModel), with the
// original's tokenizer and generation files. Core writes to a staging name and renames when complete, so a
// cancelled or failed export leaves no folder behind.
class ExportJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    // `force`: replace an earlier export of this tool in `folder` (the window asks the user first).
    void start(const std::shared_ptr<const Model>& original, const std::shared_ptr<const Model>& converted, const QString& folder,
               bool force = false);

Q_SIGNALS:
    void exported(const mla::ExportOutcome& outcome);
};

} // namespace mla
