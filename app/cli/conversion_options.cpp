#include "conversion_options.h"

#include "conversion/presets.h"

#include <limits>

namespace mla::cli {

std::vector<OptionSpec> calibrationOptions()
{
    return {
        {"calib-samples", "N", "calibrate on N sequences sampled from the model itself (default 16)"},
        {"calib-text", "FILE", "calibrate on this text, tokenised and cut into --calib-seq-len windows"},
        {"calib-ids", "FILE", "calibrate on these token ids (one sequence per line)"},
        {"calib-seq-len", "L", "calibration sequence length (default 256, capped at the context)"},
        {"seed", "S", "seed for sampled calibration (default 1)"},
    };
}

std::vector<OptionSpec> settingsOptions()
{
    return {
        {"rope-strategy", "S", "pairs that keep RoPE: high, low, uniform, 2-norm (default) or rotation-loss"},
        {"rope-pairs", "P", "frequency pairs kept per head (2P dims); default head_dim/16 rounded up, at least 1"},
        {"uniform-start", "J", "first pair of the uniform strategy (default 0)"},
        {"svd", "M", "latent method: joint (default), split, key, value or none"},
        {"latent-dim", "D", "latent width per layer d_c (d_kv = d_c / kv_heads); default: the width for a 75% KV saving"},
        {"kv-saving", "F", "target KV-cache saving in (0, 1) that sets the latent width (default 0.75)"},
        {"sigma", "up|sqrt", "singular values in the up projections (public code, default) or split as square roots (paper)"},
        {"preset", "NAME", "paper (the public MHA2MLA initialisation) or best (our training-free conversion); flags override it"},
        {"kv-budget", "N", "total cached elements per token (all layers) for the per-layer allocation of the best preset"},
        {"whiten", nullptr, "activation-aware (whitened) decomposition on the calibration inputs"},
        {"balance", "MODE", "key/value energy balance before the joint decomposition: off, on or auto (per layer, by measured error)"},
        {"refit", nullptr, "refit the up projections and W_o by least squares, layer by layer, on calibration activations"},
        {"no-refit", nullptr, "do not refit (overrides the preset)"},
        {"allocate", nullptr, "choose pairs and latent per layer for the budget (--kv-budget or --kv-saving)"},
    };
}

bool calibrationGiven(const Arguments& args)
{
    return args.has("calib-samples") || args.has("calib-text") || args.has("calib-ids");
}

CalibrationOptions calibrationFrom(const Arguments& args)
{
    CalibrationOptions o;
    const int sources = (args.has("calib-samples") ? 1 : 0) + (args.has("calib-text") ? 1 : 0) + (args.has("calib-ids") ? 1 : 0);
    if (sources > 1)
        throw UsageError{"give one calibration source: --calib-samples, --calib-text or --calib-ids"};
    if (auto f = args.value("calib-text")) {
        o.source = CalibrationOptions::Source::Text;
        o.file = *f;
    } else if (auto f2 = args.value("calib-ids")) {
        o.source = CalibrationOptions::Source::Ids;
        o.file = *f2;
    }
    o.samples = args.integer("calib-samples", 1, 1 << 20).value_or(16);
    o.sequenceLength = args.integer("calib-seq-len", 2, 1 << 20).value_or(256);
    o.seed = static_cast<std::uint64_t>(args.integer("seed", 0, std::numeric_limits<long long>::max()).value_or(1));
    return o;
}

ConversionSettings settingsFrom(const Arguments& args, const ModelConfig& config)
{
    ConversionSettings s;
    if (auto preset = args.value("preset")) {
        if (*preset != "paper" && *preset != "best")
            throw UsageError{"--preset must be paper or best"};
        applyPreset(*preset, s);
    }
    if (auto v = args.value("rope-strategy"); v && !parseRopeStrategy(*v, s.strategy))
        throw UsageError{"--rope-strategy must be high, low, uniform, 2-norm or rotation-loss"};
    if (auto v = args.value("target"); v && !parseConversionTarget(*v, s.target))
        throw UsageError{"--target must be mha2mla or deepseek-v3"};
    s.flashMla = args.has("flashmla");
    if (s.flashMla && s.target != ConversionTarget::DeepSeekV3)
        throw UsageError{"--flashmla applies to --target deepseek-v3"};
    if (s.flashMla && args.has("kv-saving"))
        throw UsageError{"--flashmla fixes the cache at 512 + 64 values per layer; drop --kv-saving"};
    // deepseek-v3: --rope-pairs counts the pairs of the one shared RoPE head, which may exceed one head's pairs.
    const std::int64_t maxPairs = s.target == ConversionTarget::DeepSeekV3 ? config.kvHeads * config.headDim / 2 : config.headDim / 2;
    s.ropePairs = args.integer("rope-pairs", 0, maxPairs).value_or(-1);
    s.uniformStart = args.integer("uniform-start", 0, config.headDim / 2 - 1).value_or(0);
    if (auto v = args.value("svd"); v && !parseLatentMethod(*v, s.method))
        throw UsageError{"--svd must be joint, split, key, value or none"};
    s.latentDim = args.integer("latent-dim", 1, 1 << 24).value_or(-1);
    if (auto saving = args.number("kv-saving", 0.0, 1.0)) {
        if (s.latentDim > 0)
            throw UsageError{"give --latent-dim or --kv-saving, not both"};
        s.targetSaving = *saving;
    }
    if (auto budget = args.integer("kv-budget", 1, std::numeric_limits<int>::max())) {
        if (s.latentDim > 0 || args.has("kv-saving"))
            throw UsageError{"give one of --latent-dim, --kv-saving or --kv-budget"};
        s.kvBudget = *budget;
        s.allocate = true;
    }
    if (auto v = args.value("sigma"); v && !parseSigmaPlacement(*v, s.sigma))
        throw UsageError{"--sigma must be up or sqrt"};
    if (args.has("whiten"))
        s.activationAware = true;
    if (auto v = args.value("balance")) {
        if (*v == "off") {
            s.balanceKeyValue = s.chooseBalance = false;
        } else if (*v == "on") {
            s.balanceKeyValue = true;
            s.chooseBalance = false;
        } else if (*v == "auto") {
            s.chooseBalance = true;
        } else {
            throw UsageError{"--balance must be off, on or auto"};
        }
    }
    if (args.has("refit") && args.has("no-refit"))
        throw UsageError{"give --refit or --no-refit, not both"};
    if (args.has("refit"))
        s.refit = true;
    if (args.has("no-refit"))
        s.refit = false;
    if (args.has("allocate"))
        s.allocate = true;
    // A fixed latent width leaves nothing to allocate.
    if (s.latentDim > 0 || s.method != LatentMethod::Joint)
        s.allocate = false;
    return s;
}

} // namespace mla::cli
