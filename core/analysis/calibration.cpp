#include "analysis/calibration.h"

#include "engine/generator.h"
#include "util/error.h"
#include "util/input_file.h"

#include <fstream>
#include <sstream>

namespace mla {

std::int64_t CalibrationSet::tokens() const
{
    std::int64_t n = 0;
    for (const auto& s : sequences)
        n += static_cast<std::int64_t>(s.size());
    return n;
}

std::string calibrationSourceName(CalibrationOptions::Source source)
{
    switch (source) {
    case CalibrationOptions::Source::Samples: return "samples";
    case CalibrationOptions::Source::Text: return "text";
    case CalibrationOptions::Source::Ids: return "ids";
    }
    return "samples";
}

CalibrationSet prepareCalibration(const ComputeBackend& backend, const Transformer& model, const Tokenizer* tokenizer, const CalibrationOptions& options,
                                  const JobControl& job, ForwardObserver* samplingObserver)
{
    const ModelConfig& c = model.config();
    std::int64_t length = options.sequenceLength;
    if (length < 2)
        throw Error("calibration sequences need at least 2 tokens");
    if (c.maxPositions > 0)
        length = std::min(length, c.maxPositions);

    CalibrationSet set;
    switch (options.source) {
    case CalibrationOptions::Source::Ids:
        set.sequences = readIdSequences(options.file);
        for (auto& s : set.sequences) {
            if (c.maxPositions > 0 && static_cast<std::int64_t>(s.size()) > c.maxPositions)
                s.resize(static_cast<std::size_t>(c.maxPositions));
        }
        set.description = "token ids from " + options.file.string();
        break;
    case CalibrationOptions::Source::Text: {
        if (!tokenizer)
            throw Error(options.file, "calibration text needs a tokenizer: none was found next to the model (use --tokenizer FILE)");
        const std::string text = readInputFile(options.file, kMaxTextInputBytes, "calibration text");
        const std::vector<int> ids = tokenizer->encode(text, false);
        const bool bos = c.bosId.has_value();
        set.sequences = splitIntoSequences(ids, length - (bos ? 1 : 0));
        if (bos) {
            for (auto& s : set.sequences)
                s.insert(s.begin(), *c.bosId);
        }
        set.description = "text from " + options.file.string() + " in windows of " + std::to_string(length) + " tokens";
        break;
    }
    case CalibrationOptions::Source::Samples: {
        if (options.samples < 1)
            throw Error("--calib-samples must be at least 1");
        const std::vector<int> start = promptIds(c, tokenizer, "");
        GenerationOptions g;
        // `steps` counts positions and the last sampled token needs none, so steps = length - 1 yields sequences of
        // exactly `length` tokens (BOS included).
        g.steps = length - 1;
        g.temperature = options.temperature;
        g.topP = 1.0f;
        // Sequence i draws from its own sampler stream, seeded seed * 7919 + i (as when each was generated alone,
        // which the batch reproduces exactly), so a sample does not depend on how many are drawn or batched.
        std::vector<std::uint64_t> seeds(static_cast<std::size_t>(options.samples));
        for (std::int64_t i = 0; i < options.samples; ++i)
            seeds[static_cast<std::size_t>(i)] = options.seed * 7919 + static_cast<std::uint64_t>(i);
        // Observed, each sequence's last token runs one more position: `length` positions, within the context.
        const bool observe = samplingObserver && backend.batchDecodeObservable() && start.size() == 1;
        const std::vector<GenerationResult> results = generateBatch(backend, model, nullptr, start, g, seeds,
                                                                    job.withStage("sampling calibration text"), 0,
                                                                    observe ? samplingObserver : nullptr);
        set.observed = observe;
        for (const GenerationResult& r : results) {
            std::vector<int> sequence = start;
            sequence.insert(sequence.end(), r.ids.begin(), r.ids.end());
            if (sequence.size() >= 2)
                set.sequences.push_back(std::move(sequence));
            else
                set.observed = false; // the observer saw a token the set leaves out
        }
        set.description = std::to_string(options.samples) + " samples of up to " + std::to_string(length)
                          + " tokens drawn from the model (temperature " + std::to_string(options.temperature).substr(0, 4)
                          + ", seed " + std::to_string(options.seed) + ")";
        break;
    }
    }
    if (set.sequences.empty())
        throw Error("calibration produced no sequence of two or more tokens");
    job.progress(1.0, "calibration ready");
    return set;
}

} // namespace mla
