#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"

namespace mla {

// Opens a checkpoint (folder, .safetensors, .bin, .gguf) and its tokenizer: the GGUF's own vocabulary, else a
// tokenizer file next to the model (as the CLI does). Errors are core's messages, naming the file.
class ModelLoadJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const QString& path);

Q_SIGNALS:
    void loaded(const mla::LoadedModel& model);
};

// The blocking part, for the job and for tests.
LoadedModel openCheckpoint(const std::filesystem::path& path, const JobControl& job = {});

} // namespace mla
