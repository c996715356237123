#pragma once

#include "jobs/job.h"
#include "pipeline/recover.h"

namespace mla {

// Recover: distillation of an exported model in PyTorch (pipeline::recover, the CLI's `recover`): the export's own
// recipe runs as a child process with progress from its step lines; cancel stops its whole process group and leaves
// no partial folder.
class RecoveryJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const pipeline::RecoveryRequest& request);

Q_SIGNALS:
    // The recovered folder, the held-out KL before and after, the recipe's summary as JSON text.
    void recovered(const QString& folder, double klBefore, double klAfter, const QString& summaryJson);
};

} // namespace mla
