#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Opens a checkpoint (folder, .safetensors, .bin, .gguf) and its tokenizer: pipeline::openModel, the CLI's rule.
class ModelLoadJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const QString& path);

Q_SIGNALS:
    void loaded(const mla::OpenedModel& model);
};

} // namespace mla
