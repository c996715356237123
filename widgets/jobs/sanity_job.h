#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

struct SanityJobOptions {
    QString prompt;                    // greedy generations start from BOS + this prompt
    std::int64_t generationSteps = 64;
    std::int64_t sequences = 4;        // evaluation text sampled from the original model (held out: its own seed)
    std::int64_t sequenceLength = 128;
    std::uint64_t seed = 7;
};

// Perplexity, KL and top-1 agreement of the converted model against the original, measured KV bytes, and
// side-by-side greedy generations (core's runSanityCheck).
class SanityJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const LoadedModel& original, const std::shared_ptr<const Model>& converted, const SanityJobOptions& options);

Q_SIGNALS:
    void checked(const mla::SanityReport& report);
};

SanityReport runSanity(const ExecutionContext& ctx, const LoadedModel& original, const Model& converted,
                       const SanityJobOptions& options);

} // namespace mla
