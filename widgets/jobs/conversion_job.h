#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Convert: the model in memory, ready for the check and the export (pipeline::convertInMemory: a pending allocation
// first, then the sequential conversion with refits or the plain one). A cancelled conversion leaves nothing behind.
class ConversionJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& model, const AnalysisPtr& analysis, const Settings& settings);

Q_SIGNALS:
    void converted(const mla::ConversionOutcome& outcome);
};

} // namespace mla
