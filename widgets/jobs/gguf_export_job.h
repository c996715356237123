#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"
#include "pipeline/export_gguf.h"

#include <optional>

namespace mla {

// Export as GGUF for llama.cpp: one file, written by core under a temporary name and renamed when complete (a
// cancelled or failed export leaves nothing behind). Either the opened model as it is (pipeline::exportGguf: llama,
// qwen2 or qwen3) or a conversion of the DeepSeek-V3 target as llama.cpp's deepseek2 (pipeline::exportConversionGguf).
class GgufExportJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    // The opened model as it is.
    void start(const OpenedModel& model, const GgufExportOptions& options);
    // A conversion of the DeepSeek-V3 target; `measured`: the check of this conversion in memory, for the model card.
    void start(const OpenedModel& original, const ConversionOutcome& conversion, const GgufExportOptions& options,
               const std::optional<CheckOutcome>& measured);

Q_SIGNALS:
    void exported(const mla::GgufExportReport& report);
};

} // namespace mla
