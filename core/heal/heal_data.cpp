#include "heal/heal_data.h"

#include "backend/compute_backend.h"
#include "engine/generator.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace mla {
namespace {

std::int64_t countTokens(const TokenSequences& s)
{
    std::int64_t n = 0;
    for (const auto& q : s)
        n += static_cast<std::int64_t>(q.size());
    return n;
}

// Keeps whole sequences, in order, until `budget` tokens; the one that crosses the budget is cut (if 2+ tokens remain).
void capTokens(TokenSequences& sequences, std::int64_t budget)
{
    TokenSequences kept;
    std::int64_t used = 0;
    for (auto& s : sequences) {
        const std::int64_t room = budget - used;
        if (room < 2)
            break;
        if (static_cast<std::int64_t>(s.size()) > room)
            s.resize(static_cast<std::size_t>(room));
        used += static_cast<std::int64_t>(s.size());
        kept.push_back(std::move(s));
    }
    sequences = std::move(kept);
}

} // namespace

std::int64_t HealData::trainTokens() const
{
    return countTokens(train);
}

std::int64_t HealData::heldOutTokens() const
{
    return countTokens(heldOut);
}

void checkHealSequences(const TokenSequences& sequences, std::int64_t vocab, const std::string& source)
{
    for (std::size_t i = 0; i < sequences.size(); ++i) {
        if (sequences[i].size() < 2)
            throw Error(source + ": sequence " + std::to_string(i + 1) + " has fewer than 2 tokens");
        for (int id : sequences[i]) {
            if (id < 0 || id >= vocab)
                throw Error(source + ": token id " + std::to_string(id) + " in sequence " + std::to_string(i + 1)
                            + " is outside the model's vocabulary of " + std::to_string(vocab) + " ids");
        }
    }
}

HealData splitHealData(TokenSequences sequences, double heldOutFraction, std::string description)
{
    const std::int64_t n = static_cast<std::int64_t>(sequences.size());
    if (n < 2)
        throw Error("healing needs at least 2 sequences (one is held out to measure it); got " + std::to_string(n)
                    + " from " + description);
    const std::int64_t held = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(heldOutFraction * static_cast<double>(n))), 1, n - 1);
    HealData data;
    data.description = std::move(description);
    // Sequence i is held out when the running count floor((i + 1) held / n) steps up: `held` picks spread evenly.
    for (std::int64_t i = 0; i < n; ++i) {
        const bool out = (i + 1) * held / n > i * held / n;
        (out ? data.heldOut : data.train).push_back(std::move(sequences[static_cast<std::size_t>(i)]));
    }
    return data;
}

HealData prepareHealData(const Transformer& original, const Tokenizer* tokenizer, const HealOptions& options, const JobControl& job)
{
    validateHealOptions(options);
    const ModelConfig& c = original.config();
    if (c.isMla())
        throw Error(original.model().source, "healing samples its data from the original model, and this one is already converted");
    const HealDataOptions& d = options.data;
    std::int64_t length = d.sequenceLength;
    if (c.maxPositions > 0)
        length = std::min(length, c.maxPositions);

    TokenSequences sequences;
    std::string description;
    if (d.source == CalibrationOptions::Source::Ids) {
        const TokenSequences raw = readIdSequences(d.file);
        checkHealSequences(raw, c.vocab, d.file.string());
        for (const auto& s : raw) {
            for (auto& w : splitIntoSequences(s, length))
                sequences.push_back(std::move(w));
        }
        description = "token ids from " + d.file.string();
    } else if (d.source == CalibrationOptions::Source::Text) {
        if (!tokenizer)
            throw Error(d.file, "healing text needs a tokenizer: none was found next to the model (use --tokenizer FILE)");
        std::ifstream in(d.file, std::ios::binary);
        if (!in)
            throw Error(d.file, "cannot open");
        std::ostringstream text;
        text << in.rdbuf();
        const bool bos = c.bosId.has_value();
        sequences = splitIntoSequences(tokenizer->encode(text.str(), false), length - (bos ? 1 : 0));
        if (bos) {
            for (auto& s : sequences)
                s.insert(s.begin(), *c.bosId);
        }
        description = "text from " + d.file.string() + " in windows of " + std::to_string(length) + " tokens";
    } else {
        const std::vector<int> start = promptIds(c, tokenizer, "");
        GenerationOptions g;
        g.steps = length - 1; // positions; the last sampled token needs none, so sequences hold `length` tokens
        g.temperature = d.temperature;
        g.topP = 1.0f;
        // Samples that stop at an end-of-text token are shorter than `length` (poem5L's hold about half of it), so
        // sequences are drawn in rounds until the samples hold the tokens asked for: a round asks for what is still
        // missing, as if every sample ran to full length. Sequence i always uses sampler seed (seed + 1000) * 7919 + i,
        // so the first round is what one round drew before, and a model whose samples run to full length gets the same
        // data. A model that ends every sample at once stops after kMaxRounds.
        constexpr int kMaxRounds = 16;
        std::int64_t drawn = 0, tokens = 0;
        for (int round = 0; round < kMaxRounds && tokens < d.tokens; ++round) {
            const std::int64_t missing = d.tokens - tokens;
            const std::int64_t count = std::max<std::int64_t>(round == 0 ? 2 : 1, (missing + length - 1) / length);
            // One sampler stream per sequence, as when each was generated alone: the batch reproduces them exactly.
            std::vector<std::uint64_t> seeds(static_cast<std::size_t>(count));
            for (std::int64_t i = 0; i < count; ++i)
                seeds[static_cast<std::size_t>(i)] = (options.seed + 1000) * 7919 + static_cast<std::uint64_t>(drawn + i);
            drawn += count;
            // The healer runs on the CPU.
            const std::vector<GenerationResult> results =
                generateBatch(cpuBackend(), original, nullptr, start, g, seeds, job.withStage("sampling healing data"));
            for (const GenerationResult& r : results) {
                std::vector<int> sequence = start;
                sequence.insert(sequence.end(), r.ids.begin(), r.ids.end());
                if (sequence.size() >= 2) {
                    tokens += static_cast<std::int64_t>(sequence.size());
                    sequences.push_back(std::move(sequence));
                }
            }
        }
        description = std::to_string(sequences.size()) + " samples of up to " + std::to_string(length)
                      + " tokens drawn from the original model (temperature " + std::to_string(d.temperature).substr(0, 4)
                      + ", sampler seeds 7919 * " + std::to_string(options.seed + 1000) + " + i)";
    }
    capTokens(sequences, d.tokens);
    checkHealSequences(sequences, c.vocab, d.source == CalibrationOptions::Source::Samples ? "healing samples" : d.file.string());
    return splitHealData(std::move(sequences), options.heldOutFraction, description);
}

} // namespace mla
