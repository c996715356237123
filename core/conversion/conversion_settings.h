#pragma once

#include "analysis/rope_selection.h"
#include "model/mla_config.h"

#include <string>
#include <string_view>
#include <vector>

namespace mla {

// Where the singular values go: all into the up projections (public MHA2MLA code) or sqrt on each side (paper).
enum class SigmaPlacement { Up, Sqrt };
std::string_view sigmaPlacementName(SigmaPlacement s);
bool parseSigmaPlacement(std::string_view name, SigmaPlacement& out);

// How the latent factors are computed (docs/numerics.md): exactly (Gram matrix, full eigen-decomposition; the default)
// or by randomized subspace iteration, an opt-in that trades a measured excess of the reconstruction error for time
// where it is faster: on the CPU, latents well below a quarter of the key/value matrix's rank (at the widths of a
// 75% saving the exact path is the faster one, docs/benchmarks.md). The conversion measures both on its first layer
// and reports them. The CUDA backend always decomposes exactly.
enum class DecompositionMethod { Exact, Randomized };
std::string_view decompositionMethodName(DecompositionMethod m); // exact, randomized
bool parseDecompositionMethod(std::string_view name, DecompositionMethod& out);
inline constexpr std::int64_t kMaxPowerIterations = 16;

// Which layout a conversion produces (docs/deepseek-export.md): the MHA2MLA research layout (per-KV-head partial
// RoPE, our engine and the MHA2MLA code run it) or the DeepSeek-V3 layout stock transformers, vLLM and SGLang serve.
enum class ConversionTarget { Mha2mla, DeepSeekV3 };
std::string_view conversionTargetName(ConversionTarget t); // mha2mla, deepseek-v3
bool parseConversionTarget(std::string_view name, ConversionTarget& out);

// ConversionSettings::refitTokens: every calibration token, or the automatic share (sequentialCalibrationCount).
inline constexpr std::int64_t kRefitTokensAll = -1;
inline constexpr std::int64_t kRefitTokensAuto = 0;
inline constexpr std::int64_t kRefitTokensPerFeature = 4;

// Every choice a conversion makes. Negative / empty values mean "use the default" and are resolved by
// resolveLayerConfigs.
struct ConversionSettings {
    RopeStrategy strategy = RopeStrategy::TwoNorm;
    std::int64_t ropePairs = -1;                 // kept pairs per head; -1: d_h/16 rounded up, at least 1
    std::vector<std::int64_t> ropePairsPerLayer; // overrides ropePairs per layer when set
    std::int64_t uniformStart = 0;               // uniform strategy offset, in pairs
    LatentMethod method = LatentMethod::Joint;
    std::int64_t latentDim = -1;                 // d_c per layer (split: both latents together); -1: from targetSaving
    std::vector<std::int64_t> latentPerLayer;    // overrides latentDim per layer when set
    double targetSaving = 0.75;                  // used when no latent width is given
    SigmaPlacement sigma = SigmaPlacement::Up;
    DecompositionMethod decomposition = DecompositionMethod::Exact;
    std::int64_t powerIterations = 1;            // randomized decomposition: subspace iterations after the sketch

    // Beyond the paper's initialisation (method document, sections 2, 6, 7).
    bool activationAware = false;      // whitened decomposition on calibration inputs
    bool balanceKeyValue = false;      // equal-energy key/value blocks before a joint decomposition
    bool chooseBalance = false;        // per layer, keep balanced or plain, whichever gives the lower output error
    bool refit = false;                // least-squares refit of up projections and W_o, layer by layer in order
    double refitRidge = 1e-3;          // ridge toward the initial weights, relative to the mean Gram diagonal
    // Calibration tokens the sequential conversion (its covariances and refits) runs on, as whole sequences from the
    // first: kRefitTokensAuto (half the calibration, but at least kRefitTokensPerFeature per fitted feature),
    // kRefitTokensAll, or at least this many (sequentialCalibrationCount).
    std::int64_t refitTokens = 0;
    bool allocate = false;             // choose pairs and latent per layer for a total budget (see kvBudget)
    std::int64_t kvBudget = -1;        // total cached elements per token over all layers; -1: from targetSaving
    std::string preset;                // "paper", "best" or empty

    // Target layout. For deepseek-v3, ropePairs is the pair count of the ONE shared rotated key head (qk_rope_head_dim
    // = 2 * ropePairs), latentDim is kv_lora_rank, and both are the same in every layer.
    ConversionTarget target = ConversionTarget::Mha2mla;
    bool flashMla = false;             // deepseek-v3: kv_lora_rank 512 + qk_rope_head_dim 64, FlashMLA's only shape
    bool operator==(const ConversionSettings&) const = default;
};

// How a method spends a latent width d_c on the key and value latents: joint and key-only put all of it on the keys'
// side (joint: one latent serves both), value-only on the values', split half on each (the key side rounded down), so
// that the cache of a split conversion equals the joint one. The one place this rule lives.
struct LatentSplit {
    std::int64_t key = 0;
    std::int64_t value = 0;
};
LatentSplit splitLatent(LatentMethod method, std::int64_t latent);

// The useful range of the latent width with `pairs` kept per head: from the smallest legal width to the full rank of
// the compressed matrix (beyond it nothing more is reconstructed).
struct LatentRange {
    std::int64_t minimum = 1;
    std::int64_t maximum = 1;
};
LatentRange latentRange(const ModelConfig& config, std::int64_t pairs, LatentMethod method);

// The latent width d_c that gives `saving` (0..1) of the original KV cache per layer with p kept pairs per head.
// Throws an Error when the saving cannot be reached with that many pairs and method.
std::int64_t latentForSaving(const ModelConfig& config, std::int64_t ropePairs, LatentMethod method, double saving);

// The kept-pair count of each layer under these settings.
std::int64_t ropePairsForLayer(const ModelConfig& config, const ConversionSettings& settings, std::int64_t layer);

// Per-layer MLA configs: kept pairs from `selections` ([layer] -> per KV head) and latent widths from the settings.
std::vector<MlaLayerConfig> resolveLayerConfigs(const ModelConfig& config, const ConversionSettings& settings,
                                                const std::vector<LayerPairSelection>& selections);

} // namespace mla
