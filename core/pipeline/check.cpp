#include "pipeline/check.h"

#include "analysis/calibration.h"

namespace mla::pipeline {

CheckOutcome check(const OpenedModel& original, const Model& converted, const CheckOptions& options, const ExecutionContext& context)
{
    for (const std::string& prompt : options.prompts)
        (void)sanityStartIds(original.model->config, original.tokenizer.get(), prompt, options.promptsAreIds);
    const Transformer a(*original.model);
    const Transformer b(converted);
    CalibrationOptions sampling;
    sampling.source = CalibrationOptions::Source::Samples;
    sampling.samples = options.sequences;
    sampling.sequenceLength = options.sequenceLength;
    sampling.seed = options.seed;
    const CalibrationSet held = prepareCalibration(context.backend(), a, original.tokenizer.get(), sampling, context.job().slice(0.0, 0.3));
    SanityOptions sanity;
    sanity.prompts = options.prompts;
    sanity.promptsAreIds = options.promptsAreIds;
    sanity.generationSteps = options.generationSteps;
    sanity.temperature = options.temperature;
    sanity.topP = options.topP;
    sanity.samplingSeed = options.samplingSeed;
    sanity.cacheFormat = options.cacheFormat;
    CheckOutcome out;
    out.report = runSanityCheck(context.backend(), a, b, original.tokenizer.get(), held.sequences, sanity, context.job().slice(0.3, 1.0));
    out.description = held.description + ", " + std::to_string(out.report.evaluatedTokens) + " predicted tokens";
    return out;
}

} // namespace mla::pipeline
