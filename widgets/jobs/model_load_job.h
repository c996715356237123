#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"
#include "pipeline/cost_estimate.h"

namespace mla {

// Opens a checkpoint (folder, .safetensors, .bin, .gguf) and its tokenizer: pipeline::openModel, the CLI's rule.
class ModelLoadJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const QString& path);

Q_SIGNALS:
    void loaded(const mla::OpenedModel& model);
    // Emitted after loaded(): the forward probe the cost estimates scale (pipeline::probeForward, run right after the
    // opening on the job's backend; not emitted when it failed).
    void probed(const mla::pipeline::ForwardProbe& probe);
};

} // namespace mla
