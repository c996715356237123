#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Sanity check: the converted model against the original (pipeline::check): perplexity, KL, top-1 agreement,
// measured KV bytes and side-by-side greedy generations.
class SanityJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& original, const std::shared_ptr<const Model>& converted, const CheckOptions& options);

Q_SIGNALS:
    void checked(const mla::CheckOutcome& outcome);
};

} // namespace mla
