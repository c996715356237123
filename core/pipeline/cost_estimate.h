#pragma once

#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"
#include "settings/settings.h"

#include <string>
#include <vector>

namespace mla::pipeline {

// What the model's forward pass costs on one backend, measured on a few tokens (a probe that takes a fraction of a
// second on the models this tool converts): the unit the estimates below scale to a whole step.
struct ForwardProbe {
    std::string device;                   // the backend's name
    std::int64_t tokens = 0;              // prefilled in one forward
    double prefillSecondsPerToken = 0.0;  // of that forward
    double decodeSecondsPerToken = 0.0;   // one more token after it (what sampling pays per token)
    double flopsPerSecond = 0.0;          // 2 · parameters per token over the prefill time: the rate the cost model uses
    bool statisticsWhileSampling = false; // the backend's batched decode can be observed: sampled calibration needs no
                                          // statistics forward pass (analyzeModel measures while it samples)
};
// Times, on the context's backend, a forward of `tokens` tokens (after one to warm up) and the fastest of four decode
// steps after it.
ForwardProbe probeForward(const OpenedModel& model, const ExecutionContext& context, std::int64_t tokens = 8);

// An estimate of a step before it starts: its time on the probed backend and the memory it allocates beyond the
// opened model. `parts` name where the time goes; `basis` says how the numbers were made (what was measured, what is a
// cost model), for the user to judge them.
struct CostEstimate {
    double seconds = 0.0;
    std::uint64_t bytes = 0;
    std::vector<std::string> parts;
    std::string basis;
};

// The calibration tokens the settings ask for: samples × sequence length (capped at the model's context) for sampled
// calibration; the same as the estimate's assumption for a file (its real count is known once it is read).
std::int64_t expectedCalibrationTokens(const ModelConfig& config, const CalibrationOptions& calibration);

// Analyze: calibration (sampling from the model, or reading a file), the statistics pass over the calibration tokens,
// and the weight and activation spectra of every layer.
CostEstimate estimateAnalysis(const ModelConfig& config, std::int64_t parameterCount, const Settings& settings, const ForwardProbe& probe);

// Convert with these settings: the calibration when they need one and there is no analysis (`analysedTokens` 0), the
// allocation when one is pending, then the conversion (one pass, or layer-by-layer refits on the calibration tokens).
CostEstimate estimateConversion(const ModelConfig& config, std::int64_t parameterCount, const Settings& settings,
                                std::int64_t analysedTokens, const ForwardProbe& probe);

} // namespace mla::pipeline
