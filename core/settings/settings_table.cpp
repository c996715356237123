#include "settings/settings_table.h"

#include "conversion/presets.h"
#include "util/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace mla {
namespace {

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMaxWidth = std::int64_t(1) << 24; // latent widths, pair counts without a model
constexpr std::int64_t kMaxCalibration = std::int64_t(1) << 20;

std::int64_t pairsOf(const ModelConfig* c)
{
    return c ? c->pairsPerHead() : kMaxWidth;
}

// --- value access

bool flagOf(const SettingValue& v) { return std::get<bool>(v); }
std::int64_t integerOf(const SettingValue& v) { return std::get<std::int64_t>(v); }
double numberOf(const SettingValue& v) { return std::get<double>(v); }
const std::string& textOf(const SettingValue& v) { return std::get<std::string>(v); }
const std::vector<std::int64_t>& listOf(const SettingValue& v) { return std::get<std::vector<std::int64_t>>(v); }

template <typename E>
std::vector<std::string> enumNames(std::initializer_list<E> values, std::string_view (*name)(E))
{
    std::vector<std::string> out;
    for (E e : values)
        out.emplace_back(name(e));
    return out;
}

std::vector<std::string> strategyNames()
{
    return enumNames({RopeStrategy::High, RopeStrategy::Low, RopeStrategy::Uniform, RopeStrategy::TwoNorm, RopeStrategy::RotationLoss},
                     &ropeStrategyName);
}

std::vector<std::string> methodNames()
{
    return enumNames({LatentMethod::Joint, LatentMethod::Split, LatentMethod::Key, LatentMethod::Value, LatentMethod::None},
                     &latentMethodName);
}

std::vector<std::string> decompositionNames()
{
    return enumNames({DecompositionMethod::Exact, DecompositionMethod::Randomized}, &decompositionMethodName);
}
std::vector<std::string> sigmaNames() { return enumNames({SigmaPlacement::Up, SigmaPlacement::Sqrt}, &sigmaPlacementName); }
std::vector<std::string> presetNames() { return {"", "paper", "best"}; }
std::vector<std::string> targetNames() { return enumNames({ConversionTarget::Mha2mla, ConversionTarget::DeepSeekV3}, &conversionTargetName); }
std::vector<std::string> sourceNames()
{
    return {calibrationSourceName(CalibrationOptions::Source::Samples), calibrationSourceName(CalibrationOptions::Source::Text),
            calibrationSourceName(CalibrationOptions::Source::Ids)};
}

CalibrationOptions::Source sourceFromName(const std::string& name)
{
    for (auto s : {CalibrationOptions::Source::Samples, CalibrationOptions::Source::Text, CalibrationOptions::Source::Ids}) {
        if (calibrationSourceName(s) == name)
            return s;
    }
    throw Error("internal: unknown calibration source '" + name + "'");
}

std::string joinChoices(const std::vector<std::string>& choices, const char* last)
{
    std::string s;
    for (std::size_t i = 0; i < choices.size(); ++i)
        s += (i == 0 ? "" : i + 1 == choices.size() ? last : ", ") + choices[i];
    return s;
}

// --- the CLI's parsing, with the CLI's messages

[[noreturn]] void flagError(std::string message)
{
    throw SettingsFlagError{std::move(message)};
}

std::int64_t flagInteger(const char* flag, const std::string& text, std::int64_t min, std::int64_t max)
{
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0)
        flagError("--" + std::string(flag) + " expects an integer, got '" + text + "'");
    if (n < min || n > max)
        flagError("--" + std::string(flag) + " must be between " + std::to_string(min) + " and " + std::to_string(max));
    return n;
}

double flagNumber(const char* flag, const std::string& text, double min, double max)
{
    char* end = nullptr;
    const double n = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(n))
        flagError("--" + std::string(flag) + " expects a number, got '" + text + "'");
    if (n < min || n > max) {
        std::ostringstream s;
        s << "--" << flag << " must be between " << min << " and " << max;
        flagError(s.str());
    }
    return n;
}

template <typename E>
E flagChoice(const char* flag, const std::string& text, bool (*parse)(std::string_view, E&), const std::vector<std::string>& names)
{
    E e{};
    if (!parse(text, e))
        flagError("--" + std::string(flag) + " must be " + joinChoices(names, " or "));
    return e;
}

// --- the table

std::vector<SettingField> makeTable()
{
    using S = Settings;
    using V = SettingValue;
    const auto none = [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{0, 0}; };
    const std::pair<double, double> noNumber{0.0, 0.0};
    std::vector<SettingField> t;

    // ---------------------------------------------------------------------------------------------- conversion
    t.push_back({"rope_strategy", "rope_strategy", "strategy", SettingType::Text, SettingScope::Conversion, 1,
                 "pairs that keep RoPE: high, low, uniform, 2-norm or rotation-loss", "", &strategyNames, none, noNumber,
                 [](const S& s) -> V { return std::string(ropeStrategyName(s.conversion.strategy)); },
                 [](S& s, const V& v) { parseRopeStrategy(textOf(v), s.conversion.strategy); },
                 {{"rope-strategy", "S", "pairs that keep RoPE: high, low, uniform, 2-norm (default) or rotation-loss",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.strategy = flagChoice<RopeStrategy>("rope-strategy", text, &parseRopeStrategy, strategyNames());
                   }}}});
    t.push_back({"rope_pairs", "rope_pairs", "", SettingType::Integer, SettingScope::Conversion, 1,
                 "kept pairs per head, -1 = default ceil(head_dim / 16)", "", nullptr,
                 [](const ModelConfig* c) { return std::pair<std::int64_t, std::int64_t>{-1, pairsOf(c)}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.ropePairs; }, [](S& s, const V& v) { s.conversion.ropePairs = integerOf(v); },
                 {{"rope-pairs", "P", "frequency pairs kept per head (2P dims); default head_dim/16 rounded up, at least 1",
                   [](S& s, const std::string& text, const ModelConfig& c) {
                       // deepseek-v3: the pairs of the one shared RoPE head, up to every KV head's pairs.
                       const std::int64_t most = s.conversion.target == ConversionTarget::DeepSeekV3 ? c.kvHeads * (c.headDim / 2) : c.headDim / 2;
                       s.conversion.ropePairs = flagInteger("rope-pairs", text, 0, most);
                   }}}});
    t.push_back({"rope_pairs_per_layer", "rope_pairs_per_layer", "", SettingType::IntegerList, SettingScope::Conversion, 1,
                 "kept RoPE pairs per head for each layer; empty: rope_pairs for every layer", "pairs", nullptr,
                 [](const ModelConfig* c) { return std::pair<std::int64_t, std::int64_t>{0, pairsOf(c)}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.ropePairsPerLayer; },
                 [](S& s, const V& v) { s.conversion.ropePairsPerLayer = listOf(v); }, {}});
    t.push_back({"uniform_start", "uniform_start", "", SettingType::Integer, SettingScope::Conversion, 1,
                 "first pair of the uniform strategy", "", nullptr,
                 [](const ModelConfig* c) { return std::pair<std::int64_t, std::int64_t>{0, pairsOf(c)}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.uniformStart; }, [](S& s, const V& v) { s.conversion.uniformStart = integerOf(v); },
                 {{"uniform-start", "J", "first pair of the uniform strategy (default 0)",
                   [](S& s, const std::string& text, const ModelConfig& c) {
                       s.conversion.uniformStart = flagInteger("uniform-start", text, 0, c.headDim / 2 - 1);
                   }}}});
    t.push_back({"svd", "svd_method", "method", SettingType::Text, SettingScope::Conversion, 1,
                 "latent method: joint, split, key, value or none", "", &methodNames, none, noNumber,
                 [](const S& s) -> V { return std::string(latentMethodName(s.conversion.method)); },
                 [](S& s, const V& v) { parseLatentMethod(textOf(v), s.conversion.method); },
                 {{"svd", "M", "latent method: joint (default), split, key, value or none",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.method = flagChoice<LatentMethod>("svd", text, &parseLatentMethod, methodNames());
                   }}}});
    t.push_back({"latent_dim", "latent_dim", "", SettingType::Integer, SettingScope::Conversion, 1,
                 "latent width d_c per layer, -1 = from the KV saving", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{-1, kMaxWidth}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.latentDim; }, [](S& s, const V& v) { s.conversion.latentDim = integerOf(v); },
                 {{"latent-dim", "D", "latent width per layer d_c (d_kv = d_c / kv_heads); default: the width for a 75% KV saving",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.latentDim = flagInteger("latent-dim", text, 1, kMaxWidth);
                   }}}});
    t.push_back({"latent_dim_per_layer", "latent_dim_per_layer", "", SettingType::IntegerList, SettingScope::Conversion, 1,
                 "latent width d_c of each layer; empty: latent_dim (or target_kv_saving) for every layer", "elements", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{0, kMaxWidth}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.latentPerLayer; },
                 [](S& s, const V& v) { s.conversion.latentPerLayer = listOf(v); }, {}});
    t.push_back({"kv_saving", "target_kv_saving", "targetSaving", SettingType::Number, SettingScope::Conversion, 1,
                 "fraction of the KV cache to save when no latent width is given", "", nullptr, none, {0.0, 1.0},
                 [](const S& s) -> V { return s.conversion.targetSaving; }, [](S& s, const V& v) { s.conversion.targetSaving = numberOf(v); },
                 {{"kv-saving", "F", "target KV-cache saving in (0, 1) that sets the latent width (default 0.75)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.targetSaving = flagNumber("kv-saving", text, 0.0, 1.0);
                   }}}});
    t.push_back({"sigma", "sigma", "sigma", SettingType::Text, SettingScope::Conversion, 1,
                 "singular values in the up projections (up) or split as square roots (sqrt)", "", &sigmaNames, none, noNumber,
                 [](const S& s) -> V { return std::string(sigmaPlacementName(s.conversion.sigma)); },
                 [](S& s, const V& v) { parseSigmaPlacement(textOf(v), s.conversion.sigma); },
                 {{"sigma", "up|sqrt", "singular values in the up projections (public code, default) or split as square roots (paper)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.sigma = flagChoice<SigmaPlacement>("sigma", text, &parseSigmaPlacement, sigmaNames());
                   }}}});
    t.push_back({"decomposition", "decomposition", "decomposition", SettingType::Text, SettingScope::Conversion, 5,
                 "how the latent factors are computed: exact or randomized (opt-in, for narrow latents on the CPU)", "",
                 &decompositionNames, none, noNumber,
                 [](const S& s) -> V { return std::string(decompositionMethodName(s.conversion.decomposition)); },
                 [](S& s, const V& v) { parseDecompositionMethod(textOf(v), s.conversion.decomposition); },
                 {{"decomposition", "exact|randomized",
                   "latent factors exact (default) or by randomized subspace iteration, which can be faster on the CPU for "
                   "latents well below a quarter of the key/value matrix's rank; the conversion measures its error and time "
                   "against the exact one on its first layer and prints both",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.decomposition =
                           flagChoice<DecompositionMethod>("decomposition", text, &parseDecompositionMethod, decompositionNames());
                   }}}});
    t.push_back({"power_iterations", "power_iterations", "powerIterations", SettingType::Integer, SettingScope::Conversion, 5,
                 "subspace iterations of the randomized decomposition (more: closer to exact, slower)", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{0, kMaxPowerIterations}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.powerIterations; },
                 [](S& s, const V& v) { s.conversion.powerIterations = integerOf(v); },
                 {{"power-iterations", "Q", "with --decomposition randomized: subspace iterations (default 1; more is closer to exact)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.powerIterations = flagInteger("power-iterations", text, 0, kMaxPowerIterations);
                   }}}});
    t.push_back({"preset", "preset", "preset", SettingType::Text, SettingScope::Conversion, 1,
                 "the named recipe the settings started from: paper, best or empty (custom)", "", &presetNames, none, noNumber,
                 [](const S& s) -> V { return s.conversion.preset; }, [](S& s, const V& v) { s.conversion.preset = textOf(v); },
                 {{"preset", "NAME", "paper (the public MHA2MLA initialisation) or best (our training-free conversion); flags override it",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       if (text != "paper" && text != "best")
                           flagError("--preset must be paper or best");
                       applyPreset(text, s.conversion);
                   }}}});
    t.push_back({"kv_budget", "kv_budget", "", SettingType::Integer, SettingScope::Conversion, 1,
                 "total cached elements per token for the per-layer allocation, -1 = from the KV saving", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{-1, kMaxInt64}; }, noNumber,
                 [](const S& s) -> V { return s.conversion.kvBudget; }, [](S& s, const V& v) { s.conversion.kvBudget = integerOf(v); },
                 {{"kv-budget", "N", "total cached elements per token (all layers) for the per-layer allocation of the best preset",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.kvBudget = flagInteger("kv-budget", text, 1, std::numeric_limits<int>::max());
                       s.conversion.allocate = true;
                   }}}});
    t.push_back({"activation_aware", "activation_aware", "activationAware", SettingType::Flag, SettingScope::Conversion, 1,
                 "whitened (activation-aware) decomposition on the calibration inputs", "", nullptr, none, noNumber,
                 [](const S& s) -> V { return s.conversion.activationAware; },
                 [](S& s, const V& v) { s.conversion.activationAware = flagOf(v); },
                 {{"whiten", nullptr, "activation-aware (whitened) decomposition on the calibration inputs",
                   [](S& s, const std::string&, const ModelConfig&) { s.conversion.activationAware = true; }}}});
    t.push_back({"balance_key_value", "balance_key_value", "balanceKeyValue", SettingType::Flag, SettingScope::Conversion, 1,
                 "equal-energy key and value blocks before the joint decomposition", "", nullptr, none, noNumber,
                 [](const S& s) -> V { return s.conversion.balanceKeyValue; },
                 [](S& s, const V& v) { s.conversion.balanceKeyValue = flagOf(v); },
                 {{"balance", "MODE", "key/value energy balance before the joint decomposition: off, on or auto (per layer, by measured error)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       if (text == "off") {
                           s.conversion.balanceKeyValue = s.conversion.chooseBalance = false;
                       } else if (text == "on") {
                           s.conversion.balanceKeyValue = true;
                           s.conversion.chooseBalance = false;
                       } else if (text == "auto") {
                           s.conversion.chooseBalance = true;
                       } else {
                           flagError("--balance must be off, on or auto");
                       }
                   }}}});
    t.push_back({"choose_balance", "choose_balance", "chooseBalance", SettingType::Flag, SettingScope::Conversion, 1,
                 "per layer, keep the balanced or the plain decomposition, whichever has the lower output error", "", nullptr,
                 none, noNumber, [](const S& s) -> V { return s.conversion.chooseBalance; },
                 [](S& s, const V& v) { s.conversion.chooseBalance = flagOf(v); }, {}});
    t.push_back({"refit", "refit", "refit", SettingType::Flag, SettingScope::Conversion, 1,
                 "least-squares refit of the up projections and W_o, layer by layer", "", nullptr, none, noNumber,
                 [](const S& s) -> V { return s.conversion.refit; }, [](S& s, const V& v) { s.conversion.refit = flagOf(v); },
                 {{"refit", nullptr, "refit the up projections and W_o by least squares, layer by layer, on calibration activations",
                   [](S& s, const std::string&, const ModelConfig&) { s.conversion.refit = true; }},
                  {"no-refit", nullptr, "do not refit (overrides the preset)",
                   [](S& s, const std::string&, const ModelConfig&) { s.conversion.refit = false; }}}});
    t.push_back({"refit_ridge", "refit_ridge", "", SettingType::Number, SettingScope::Conversion, 1,
                 "ridge of the least-squares refit, relative to the mean Gram diagonal", "", nullptr, none,
                 {0.0, std::numeric_limits<double>::max()}, [](const S& s) -> V { return s.conversion.refitRidge; },
                 [](S& s, const V& v) { s.conversion.refitRidge = numberOf(v); }, {}});
    t.push_back({"refit_tokens", "refit_tokens", "", SettingType::Integer, SettingScope::Conversion, 6,
                 "calibration tokens the sequential refit runs on: -1 all, 0 automatic (half, at least 4 per fitted feature), "
                 "or at least this many (whole sequences)",
                 "", nullptr, [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{kRefitTokensAll, std::numeric_limits<std::int64_t>::max()}; },
                 noNumber, [](const S& s) -> V { return s.conversion.refitTokens; },
                 [](S& s, const V& v) { s.conversion.refitTokens = integerOf(v); },
                 {{"refit-tokens", "N|auto|all",
                   "calibration tokens the layer-by-layer refit runs on, as whole sequences from the first: auto (default: half "
                   "of them, but at least 4 per fitted feature, so a large model keeps them all), all, or at least N",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       if (text == "all")
                           s.conversion.refitTokens = kRefitTokensAll;
                       else if (text == "auto")
                           s.conversion.refitTokens = kRefitTokensAuto;
                       else
                           s.conversion.refitTokens = flagInteger("refit-tokens", text, 1, std::numeric_limits<std::int64_t>::max());
                   }}}});
    t.push_back({"allocate", "allocate", "allocate", SettingType::Flag, SettingScope::Conversion, 1,
                 "choose pairs and latent per layer for the KV budget", "", nullptr, none, noNumber,
                 [](const S& s) -> V { return s.conversion.allocate; }, [](S& s, const V& v) { s.conversion.allocate = flagOf(v); },
                 {{"allocate", nullptr, "choose pairs and latent per layer for the budget (--kv-budget or --kv-saving)",
                   [](S& s, const std::string&, const ModelConfig&) { s.conversion.allocate = true; }}}});
    // The layout written (docs/deepseek-export.md); settingsFromFlags applies --target before the other flags, since
    // --rope-pairs reads it (deepseek-v3 counts the pairs of the one shared RoPE head).
    t.push_back({"target", "target", "target", SettingType::Text, SettingScope::Conversion, 4,
                 "layout of the converted model: mha2mla (research layout) or deepseek-v3 (stock engines)", "", &targetNames, none,
                 noNumber, [](const S& s) -> V { return std::string(conversionTargetName(s.conversion.target)); },
                 [](S& s, const V& v) { parseConversionTarget(textOf(v), s.conversion.target); },
                 {{"target", "T", "layout written: mha2mla (default, MHA2MLA research layout) or deepseek-v3 (DeepseekV3ForCausalLM, "
                                  "served by stock transformers, vLLM and SGLang; docs/deepseek-export.md)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.conversion.target = flagChoice<ConversionTarget>("target", text, &parseConversionTarget, targetNames());
                   }}}});
    t.push_back({"flashmla", "flashmla", "flashMla", SettingType::Flag, SettingScope::Conversion, 4,
                 "deepseek-v3 target: kv_lora_rank 512 + qk_rope_head_dim 64, the only shape FlashMLA runs", "", nullptr, none,
                 noNumber, [](const S& s) -> V { return s.conversion.flashMla; }, [](S& s, const V& v) { s.conversion.flashMla = flagOf(v); },
                 {{"flashmla", nullptr, "with --target deepseek-v3: kv_lora_rank 512 + qk_rope_head_dim 64 (FlashMLA's shape)",
                   [](S& s, const std::string&, const ModelConfig&) { s.conversion.flashMla = true; }}}});

    // ---------------------------------------------------------------------------------------------- workbench
    t.push_back({"calibration_source", "calibration_source", "calibrationSource", SettingType::Text, SettingScope::Workbench, 2,
                 "where the next analysis takes calibration tokens from: samples, text or ids", "", &sourceNames, none, noNumber,
                 [](const S& s) -> V { return calibrationSourceName(s.calibration.source); },
                 [](S& s, const V& v) { s.calibration.source = sourceFromName(textOf(v)); }, {}});
    t.push_back({"calibration_samples", "calibration_samples", "calibrationSamples", SettingType::Integer, SettingScope::Workbench, 2,
                 "sequences sampled from the model for calibration", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{1, kMaxCalibration}; }, noNumber,
                 [](const S& s) -> V { return s.calibration.samples; }, [](S& s, const V& v) { s.calibration.samples = integerOf(v); },
                 {{"calib-samples", "N", "calibrate on N sequences sampled from the model itself (default 16)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.calibration.samples = flagInteger("calib-samples", text, 1, kMaxCalibration);
                   }}}});
    t.push_back({"calibration_file", "calibration_file", "calibrationFile", SettingType::Text, SettingScope::Workbench, 2,
                 "the text or token-ids file of a text or ids calibration", "", nullptr, none, noNumber,
                 [](const S& s) -> V { return s.calibration.file.string(); }, [](S& s, const V& v) { s.calibration.file = textOf(v); },
                 {{"calib-text", "FILE", "calibrate on this text, tokenised and cut into --calib-seq-len windows",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.calibration.source = CalibrationOptions::Source::Text;
                       s.calibration.file = text;
                   }},
                  {"calib-ids", "FILE", "calibrate on these token ids (one sequence per line)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.calibration.source = CalibrationOptions::Source::Ids;
                       s.calibration.file = text;
                   }}}});
    t.push_back({"calibration_length", "calibration_sequence_length", "calibrationLength", SettingType::Integer,
                 SettingScope::Workbench, 2, "tokens per calibration sequence (capped at the model's context)", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{2, kMaxCalibration}; }, noNumber,
                 [](const S& s) -> V { return s.calibration.sequenceLength; },
                 [](S& s, const V& v) { s.calibration.sequenceLength = integerOf(v); },
                 {{"calib-seq-len", "L", "calibration sequence length (default 256, capped at the context)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.calibration.sequenceLength = flagInteger("calib-seq-len", text, 2, kMaxCalibration);
                   }}}});
    t.push_back({"calibration_seed", "calibration_seed", "calibrationSeed", SettingType::Integer, SettingScope::Workbench, 2,
                 "seed of sampled calibration", "", nullptr,
                 [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{0, kMaxInt64}; }, noNumber,
                 [](const S& s) -> V { return static_cast<std::int64_t>(s.calibration.seed); },
                 [](S& s, const V& v) { s.calibration.seed = static_cast<std::uint64_t>(integerOf(v)); },
                 {{"seed", "S", "seed for sampled calibration (default 1)",
                   [](S& s, const std::string& text, const ModelConfig&) {
                       s.calibration.seed = static_cast<std::uint64_t>(flagInteger("seed", text, 0, std::numeric_limits<long long>::max()));
                   }}}});
    t.push_back({"calibration_temperature", "calibration_temperature", "", SettingType::Number, SettingScope::Workbench, 2,
                 "sampling temperature of sampled calibration", "", nullptr, none, {0.0, 1.0e6},
                 [](const S& s) -> V { return static_cast<double>(s.calibration.temperature); },
                 [](S& s, const V& v) { s.calibration.temperature = static_cast<float>(numberOf(v)); }, {}});
    t.push_back({"locked_layers", "locked_layers", "", SettingType::IntegerList, SettingScope::Workbench, 2,
                 "1 for each layer whose latent width was set by hand (it keeps it when the global width moves); empty: none",
                 "flag", nullptr, [](const ModelConfig*) { return std::pair<std::int64_t, std::int64_t>{0, 1}; }, noNumber,
                 [](const S& s) -> V {
                     std::vector<std::int64_t> out;
                     for (bool b : s.lockedLayers)
                         out.push_back(b ? 1 : 0);
                     return out;
                 },
                 [](S& s, const V& v) {
                     s.lockedLayers.clear();
                     for (std::int64_t b : listOf(v))
                         s.lockedLayers.push_back(b != 0);
                 },
                 {}});
    return t;
}

// Forms older preferences files hold.
std::optional<std::string> legacyPreference(std::string_view key, const std::string& text)
{
    if (key == "calibrationSource") {
        const auto names = sourceNames();
        if (text.size() == 1 && text[0] >= '0' && text[0] <= '2')
            return names[static_cast<std::size_t>(text[0] - '0')];
    }
    return std::nullopt;
}

std::optional<std::int64_t> parseInteger(std::string_view text)
{
    const std::string s(text);
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0)
        return std::nullopt;
    return n;
}

} // namespace

const std::vector<SettingField>& settingFields()
{
    static const std::vector<SettingField> table = makeTable();
    return table;
}

const SettingField* findSettingField(std::string_view json)
{
    for (const SettingField& f : settingFields()) {
        if (json == f.json)
            return &f;
    }
    return nullptr;
}

std::string printSetting(const SettingField& field, const SettingValue& value)
{
    (void)field;
    return std::visit(
        [](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, bool>) {
                return v ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return std::to_string(v);
            } else if constexpr (std::is_same_v<T, double>) {
                std::ostringstream s;
                s.precision(17);
                s << v;
                return s.str();
            } else if constexpr (std::is_same_v<T, std::string>) {
                return v;
            } else {
                std::string s;
                for (std::size_t i = 0; i < v.size(); ++i)
                    s += (i ? "," : "") + std::to_string(v[i]);
                return s;
            }
        },
        value);
}

std::string settingProblem(const SettingField& field, const SettingValue& value, const ModelConfig* config)
{
    switch (field.type) {
    case SettingType::Flag:
        return std::holds_alternative<bool>(value) ? std::string() : "is not a flag";
    case SettingType::Integer: {
        if (!std::holds_alternative<std::int64_t>(value))
            return "is not an integer";
        const auto [lo, hi] = field.integerRange(config);
        const std::int64_t v = integerOf(value);
        if (v < lo || v > hi)
            return "holds " + std::to_string(v) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        return {};
    }
    case SettingType::Number: {
        if (!std::holds_alternative<double>(value))
            return "is not a number";
        const double v = numberOf(value);
        if (!std::isfinite(v) || v < field.numberRange.first || v > field.numberRange.second) {
            std::ostringstream s;
            s << "holds " << v << ", outside [" << field.numberRange.first << ", " << field.numberRange.second << "]";
            return s.str();
        }
        return {};
    }
    case SettingType::Text: {
        if (!std::holds_alternative<std::string>(value))
            return "is not text";
        if (!field.choices)
            return {};
        const auto choices = field.choices();
        if (std::find(choices.begin(), choices.end(), textOf(value)) != choices.end())
            return {};
        std::vector<std::string> named;
        for (const auto& c : choices) {
            if (!c.empty())
                named.push_back(c);
        }
        return "'" + textOf(value) + "' is not one of " + joinChoices(named, ", ");
    }
    case SettingType::IntegerList: {
        if (!std::holds_alternative<std::vector<std::int64_t>>(value))
            return "is not a list of integers";
        const auto& list = listOf(value);
        if (config && !list.empty() && static_cast<std::int64_t>(list.size()) != config->layers)
            return "lists " + std::to_string(list.size()) + " layers, the model has " + std::to_string(config->layers);
        const auto [lo, hi] = field.integerRange(config);
        for (std::int64_t v : list) {
            if (v < lo || v > hi)
                return "holds " + std::to_string(v) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        }
        return {};
    }
    }
    return "has an unknown type";
}

std::optional<SettingValue> parseSetting(const SettingField& field, std::string_view text, const ModelConfig* config)
{
    SettingValue v;
    switch (field.type) {
    case SettingType::Flag:
        if (text == "true" || text == "1")
            v = true;
        else if (text == "false" || text == "0")
            v = false;
        else
            return std::nullopt;
        break;
    case SettingType::Integer: {
        const auto n = parseInteger(text);
        if (!n)
            return std::nullopt;
        v = *n;
        break;
    }
    case SettingType::Number: {
        const std::string s(text);
        char* end = nullptr;
        const double n = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0')
            return std::nullopt;
        v = n;
        break;
    }
    case SettingType::Text:
        v = std::string(text);
        break;
    case SettingType::IntegerList: {
        std::vector<std::int64_t> list;
        std::string item;
        const std::string s = std::string(text) + ",";
        for (char ch : s) {
            if (ch == ',') {
                if (item.empty() && list.empty() && s.size() == 1)
                    break; // "" is the empty list
                const auto n = parseInteger(item);
                if (!n)
                    return std::nullopt;
                list.push_back(*n);
                item.clear();
            } else if (ch != ' ') {
                item += ch;
            }
        }
        v = std::move(list);
        break;
    }
    }
    if (!settingProblem(field, v, config).empty())
        return std::nullopt;
    return v;
}

nlohmann::ordered_json settingsJson(const Settings& settings, SettingScope scope)
{
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const SettingField& f : settingFields()) {
        if (scope == SettingScope::Conversion && f.scope != SettingScope::Conversion)
            continue;
        std::visit([&](const auto& v) { j[f.json] = v; }, f.get(settings));
    }
    return j;
}

nlohmann::ordered_json settingsJson(const ConversionSettings& settings)
{
    Settings s;
    s.conversion = settings;
    return settingsJson(s, SettingScope::Conversion);
}

std::vector<std::pair<std::string, std::string>> preferenceEntries(const Settings& settings)
{
    std::vector<std::pair<std::string, std::string>> out;
    for (const SettingField& f : settingFields()) {
        if (*f.preference)
            out.emplace_back(f.preference, printSetting(f, f.get(settings)));
    }
    return out;
}

void applyPreferences(Settings& settings, const std::function<std::optional<std::string>(std::string_view key)>& lookup)
{
    for (const SettingField& f : settingFields()) {
        if (!*f.preference)
            continue;
        const std::optional<std::string> text = lookup(f.preference);
        if (!text)
            continue;
        std::optional<SettingValue> v = parseSetting(f, *text);
        if (!v) {
            if (const auto legacy = legacyPreference(f.preference, *text))
                v = parseSetting(f, *legacy);
        }
        if (v)
            f.set(settings, *v);
    }
    // A file source without a file cannot calibrate: the samples it falls back to are what the workbench shows.
    if (settings.calibration.source != CalibrationOptions::Source::Samples && settings.calibration.file.empty())
        settings.calibration.source = CalibrationOptions::Source::Samples;
}

std::vector<SettingFlag> settingFlags(SettingScope scope)
{
    std::vector<SettingFlag> out;
    for (const SettingField& f : settingFields()) {
        if (f.scope == scope)
            out.insert(out.end(), f.flags.begin(), f.flags.end());
    }
    return out;
}

bool calibrationFlagGiven(const std::function<std::optional<std::string>(std::string_view flag)>& lookup)
{
    return lookup("calib-samples").has_value() || lookup("calib-text").has_value() || lookup("calib-ids").has_value();
}

Settings settingsFromFlags(const std::function<std::optional<std::string>(std::string_view flag)>& lookup, const ModelConfig& config)
{
    auto given = [&](const char* flag) { return lookup(flag).has_value(); };
    Settings s;
    // A preset is a starting point: every other flag overrides it, whatever their order on the command line.
    const SettingField* preset = findSettingField("preset");
    if (const auto text = lookup("preset"))
        preset->flags.front().apply(s, *text, config);
    // The target next: the bounds of --rope-pairs depend on it.
    const SettingField* target = findSettingField("target");
    if (const auto text = lookup("target"))
        target->flags.front().apply(s, *text, config);
    for (const SettingField& f : settingFields()) {
        if (&f == preset || &f == target)
            continue;
        for (const SettingFlag& flag : f.flags) {
            if (const auto text = lookup(flag.name))
                flag.apply(s, *text, config);
        }
    }
    if ((given("calib-samples") ? 1 : 0) + (given("calib-text") ? 1 : 0) + (given("calib-ids") ? 1 : 0) > 1)
        flagError("give one calibration source: --calib-samples, --calib-text or --calib-ids");
    if (given("latent-dim") && given("kv-saving"))
        flagError("give --latent-dim or --kv-saving, not both");
    if (given("kv-budget") && (given("latent-dim") || given("kv-saving")))
        flagError("give one of --latent-dim, --kv-saving or --kv-budget");
    if (given("refit") && given("no-refit"))
        flagError("give --refit or --no-refit, not both");
    if (given("flashmla") && s.conversion.target != ConversionTarget::DeepSeekV3)
        flagError("--flashmla applies to --target deepseek-v3");
    if (given("flashmla") && (given("kv-saving") || given("latent-dim") || given("kv-budget") || given("rope-pairs")))
        flagError("--flashmla fixes the cache at 512 + 64 values per layer; drop --kv-saving, --latent-dim, --kv-budget and --rope-pairs");
    if (given("power-iterations") && s.conversion.decomposition != DecompositionMethod::Randomized)
        flagError("--power-iterations applies to --decomposition randomized");
    // A fixed latent width leaves nothing to allocate.
    if (s.conversion.latentDim > 0 || s.conversion.method != LatentMethod::Joint)
        s.conversion.allocate = false;
    return s;
}

} // namespace mla
