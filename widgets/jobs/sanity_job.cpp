#include "jobs/sanity_job.h"

#include "analysis/calibration.h"

namespace mla {

SanityReport runSanity(const ExecutionContext& ctx, const LoadedModel& original, const Model& converted, const SanityJobOptions& options)
{
    const JobControl& job = ctx.job();
    const Transformer a(*original.model);
    const Transformer b(converted);
    CalibrationOptions sample;
    sample.source = CalibrationOptions::Source::Samples;
    sample.samples = options.sequences;
    sample.sequenceLength = options.sequenceLength;
    sample.seed = options.seed;
    const CalibrationSet evaluation = prepareCalibration(ctx.backend(), a, original.tokenizer.get(), sample, job.slice(0.0, 0.3));
    SanityOptions s;
    s.prompts = {options.prompt.toStdString()};
    s.generationSteps = options.generationSteps;
    return runSanityCheck(ctx.backend(), a, b, original.tokenizer.get(), evaluation.sequences, s, job.slice(0.3, 1.0));
}

void SanityJob::start(const LoadedModel& original, const std::shared_ptr<const Model>& converted, const SanityJobOptions& options)
{
    run<SanityReport>(
        tr("Sanity check"),
        [original, converted, options](const ExecutionContext& ctx) { return runSanity(ctx, original, *converted, options); },
        [this](SanityReport&& r) { Q_EMIT checked(r); });
}

} // namespace mla
