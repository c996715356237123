#pragma once

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

#include <filesystem>
#include <string>

namespace mla {

class ComputeBackend;

// Where calibration tokens come from (CLI: --calib-samples N | --calib-text FILE | --calib-ids FILE).
struct CalibrationOptions {
    enum class Source { Samples, Text, Ids };
    Source source = Source::Samples;
    std::filesystem::path file;     // Text / Ids
    std::int64_t samples = 16;      // Samples: sequences drawn from the model itself
    std::int64_t sequenceLength = 256; // Samples and Text; capped at the model's context
    std::uint64_t seed = 1;
    float temperature = 1.0f;       // Samples: plain sampling from the model's own distribution

    bool operator==(const CalibrationOptions&) const = default;
};

struct CalibrationSet {
    std::string description; // e.g. "16 samples of 256 tokens from the model (seed 1)"
    TokenSequences sequences;
    // True when prepareCalibration's sampling observer saw every token of every sequence, once, and nothing else.
    bool observed = false;
    std::int64_t tokens() const;
};

// Builds the calibration sequences. Samples start from BOS and are drawn with the given temperature (top-p off);
// text is tokenised and cut into windows that each start with BOS; ids are used exactly as given. Sampling runs on
// `backend`. With `samplingObserver`, samples are drawn by an observed batched decode where the backend allows it
// (generateBatch's observer: the observer sees each token's activations, layer by layer, as the sampling runs it), and
// the set says whether it did (`observed`); other sources, or a backend that cannot, leave it unobserved.
CalibrationSet prepareCalibration(const ComputeBackend& backend, const Transformer& model, const Tokenizer* tokenizer, const CalibrationOptions& options,
                                  const JobControl& job = {}, ForwardObserver* samplingObserver = nullptr);

std::string calibrationSourceName(CalibrationOptions::Source source);

} // namespace mla
