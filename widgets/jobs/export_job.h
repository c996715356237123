#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

#include <optional>

namespace mla {

// Export: writes the converted model as a Hugging Face folder in the MHA2MLA layout with the model card README.md and
// the original's tokenizer and generation files (pipeline::exportConversion, the CLI's folder). Core writes to a
// staging name and renames when complete, so a cancelled or failed export leaves no folder behind.
class ExportJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    // `force`: replace an earlier export of this tool in `folder` (the window asks the user first).
    void start(const OpenedModel& original, const ConversionOutcome& conversion, const QString& folder,
               const std::optional<CheckOutcome>& measured = std::nullopt, bool force = false);

Q_SIGNALS:
    void exported(const mla::ExportOutcome& outcome);
};

} // namespace mla
