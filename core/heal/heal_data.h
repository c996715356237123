#pragma once

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "heal/heal_options.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

#include <string>

namespace mla {

// The sequences a heal trains on and the held-out ones it measures with (block losses, early stopping, model KL).
struct HealData {
    TokenSequences train;
    TokenSequences heldOut;
    std::string description; // e.g. "32 samples of up to 256 tokens drawn from the model (...)"
    std::int64_t trainTokens() const;
    std::int64_t heldOutTokens() const;
};

// Builds the healing sequences from the original model: samples drawn from it (as calibration does, with sampler
// seeds 7919 (seed + 1000) + i so that they are independent of the default calibration and of evaluation sets), or
// a text file tokenised into windows that each start with BOS, or a file of token ids (one sequence per line, cut
// into windows of the sequence length). At most options.data.tokens tokens are used. A held-out share of the
// windows (spread evenly over them) is set aside. Validates the options and every id before any sampling.
HealData prepareHealData(const Transformer& original, const Tokenizer* tokenizer, const HealOptions& options,
                         const JobControl& job = {});

// Splits sequences into train and held-out as prepareHealData does (at least one of each; Error otherwise).
HealData splitHealData(TokenSequences sequences, double heldOutFraction, std::string description);

// Throws an Error naming `source` when an id is outside the vocabulary or a sequence is shorter than 2 tokens.
void checkHealSequences(const TokenSequences& sequences, std::int64_t vocab, const std::string& source);

} // namespace mla
