#include "heal_flags.h"

#include <limits>

namespace mla::cli {

std::vector<OptionSpec> healOptions()
{
    return {
        {"heal", nullptr, "heal the converted attention after the conversion: block-wise distillation against the original"},
        {"heal-steps", "N", "AdamW steps per layer (default 200; a layer stops early when its held-out loss stops improving)"},
        {"heal-lr", "X", "peak learning rate (default: 0.1 x the RMS of each layer's query weights)"},
        {"heal-tokens", "N", "healing tokens in all, 1/8 of the sequences held out (default 32768)"},
        {"heal-seed", "S", "seed of the sampled healing data and the batch order (default 1)"},
        {"heal-text", "FILE", "heal on this text (default: sequences sampled from the original model)"},
        {"heal-ids", "FILE", "heal on these token ids (one sequence per line)"},
        {"heal-seq-len", "L", "healing sequence length (default 256, capped at the context)"},
        {"heal-start", "S", "auto (heal the paper split and the allocated one, keep the lower held-out KL), paper or allocated"},
    };
}

std::optional<HealFlags> healFlagsFrom(const Arguments& args)
{
    if (!args.has("heal")) {
        for (const auto& o : healOptions())
            if (args.has(o.name))
                throw UsageError{"--" + std::string(o.name) + " needs --heal"};
        return std::nullopt;
    }
    HealFlags f;
    HealOptions& o = f.options;
    o.steps = args.integer("heal-steps", 1, 1 << 24).value_or(o.steps);
    if (auto lr = args.number("heal-lr", 0.0, 1e6)) {
        if (!(*lr > 0.0))
            throw UsageError{"--heal-lr must be a positive number"};
        o.learningRate = *lr;
    }
    o.data.tokens = args.integer("heal-tokens", 4, 1LL << 32).value_or(o.data.tokens);
    o.seed = static_cast<std::uint64_t>(args.integer("heal-seed", 0, std::numeric_limits<long long>::max()).value_or(1));
    o.data.sequenceLength = args.integer("heal-seq-len", 2, 1 << 20).value_or(o.data.sequenceLength);
    if (args.has("heal-text") && args.has("heal-ids"))
        throw UsageError{"give --heal-text or --heal-ids, not both"};
    if (auto t = args.value("heal-text")) {
        o.data.source = CalibrationOptions::Source::Text;
        o.data.file = *t;
    } else if (auto i = args.value("heal-ids")) {
        o.data.source = CalibrationOptions::Source::Ids;
        o.data.file = *i;
    }
    if (auto s = args.value("heal-start")) {
        HealStart start;
        if (!parseHealStart(*s, start))
            throw UsageError{"--heal-start must be auto, paper or allocated"};
        f.start = start;
    }
    validateHealOptions(o);
    return f;
}

} // namespace mla::cli
