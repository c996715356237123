#include "conversion/settings_validation.h"

#include "conversion/deepseek_converter.h"
#include "util/error.h"

#include <cmath>
#include <sstream>

namespace mla {
namespace {

std::string range(std::int64_t lo, std::int64_t hi)
{
    return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

[[noreturn]] void fail(const std::string& what)
{
    throw Error(what);
}

} // namespace

std::int64_t maxLatentWidth(const ModelConfig& c, LatentMethod method, std::int64_t pairs)
{
    const std::int64_t nope = c.kvHeads * (c.headDim - 2 * pairs);
    const std::int64_t values = c.kvDim();
    switch (method) {
    case LatentMethod::Joint: return std::min(c.hidden, nope + values);
    case LatentMethod::Split: return std::min(c.hidden, nope) + std::min(c.hidden, values);
    case LatentMethod::Key: return std::min(c.hidden, nope);
    case LatentMethod::Value: return std::min(c.hidden, values);
    case LatentMethod::None: return 0;
    }
    return 0;
}

void validateConversionSettings(const ModelConfig& c, const ConversionSettings& s)
{
    if (s.flashMla && s.target != ConversionTarget::DeepSeekV3)
        fail("--flashmla applies to --target deepseek-v3");
    if (s.refitTokens < kRefitTokensAll)
        fail("--refit-tokens must be all, auto or a positive token count, got " + std::to_string(s.refitTokens));
    if (s.powerIterations < 0 || s.powerIterations > kMaxPowerIterations)
        fail("--power-iterations " + std::to_string(s.powerIterations) + " is outside the allowed range " + range(0, kMaxPowerIterations));
    if (s.decomposition == DecompositionMethod::Randomized && s.target == ConversionTarget::DeepSeekV3)
        fail("--decomposition randomized applies to the mha2mla target (whose first layer measures it against the exact "
             "factors); the deepseek-v3 target decomposes exactly");
    if (s.target == ConversionTarget::DeepSeekV3) {
        // One latent and one shared RoPE head for every layer: the widths' own rules (deepSeekWidths throws naming them).
        if (!s.ropePairsPerLayer.empty() || !s.latentPerLayer.empty())
            fail("the deepseek-v3 target has one kv_lora_rank and one qk_rope_head_dim for every layer; per-layer widths do not apply");
        requireDeepSeekConvertible(c, {});
        deepSeekWidths(c, s);
        if (!(std::isfinite(s.refitRidge) && s.refitRidge >= 0.0))
            fail("the refit ridge must be a finite, non-negative number");
        return;
    }
    const std::int64_t pairsPerHead = c.headDim / 2;
    const std::string model = " for this model (head size " + std::to_string(c.headDim) + ", hidden " + std::to_string(c.hidden)
                              + ", " + std::to_string(c.kvHeads) + " KV heads)";
    if (s.ropePairs < -1 || s.ropePairs > pairsPerHead)
        fail("--rope-pairs " + std::to_string(s.ropePairs) + " is outside the allowed range " + range(0, pairsPerHead) + model);
    if (!s.ropePairsPerLayer.empty()) {
        if (static_cast<std::int64_t>(s.ropePairsPerLayer.size()) != c.layers)
            fail("per-layer RoPE pairs list " + std::to_string(s.ropePairsPerLayer.size()) + " layers, the model has "
                 + std::to_string(c.layers));
        for (std::int64_t p : s.ropePairsPerLayer)
            if (p < 0 || p > pairsPerHead)
                fail("per-layer RoPE pairs " + std::to_string(p) + " is outside the allowed range " + range(0, pairsPerHead) + model);
    }
    if (s.uniformStart < 0 || s.uniformStart >= pairsPerHead)
        fail("--uniform-start " + std::to_string(s.uniformStart) + " is outside the allowed range " + range(0, pairsPerHead - 1) + model);
    // The fewest kept pairs any layer can have: the loosest bound on the latent.
    std::int64_t fewest = s.ropePairs >= 0 && !s.allocate ? s.ropePairs : 0;
    for (std::int64_t p : s.ropePairsPerLayer)
        fewest = std::min(fewest, p);
    const std::int64_t minimum = s.method == LatentMethod::Split ? 2 : 1;
    const std::int64_t widest = maxLatentWidth(c, s.method, fewest);
    if (s.method != LatentMethod::None) {
        if (s.latentDim != -1 && (s.latentDim < minimum || s.latentDim > widest))
            fail("--latent-dim " + std::to_string(s.latentDim) + " is outside the allowed range " + range(minimum, widest) + model
                 + " with the " + std::string(latentMethodName(s.method)) + " method");
        if (!s.latentPerLayer.empty()) {
            if (static_cast<std::int64_t>(s.latentPerLayer.size()) != c.layers)
                fail("per-layer latent widths list " + std::to_string(s.latentPerLayer.size()) + " layers, the model has "
                     + std::to_string(c.layers));
            for (std::int64_t w : s.latentPerLayer)
                if (w < minimum || w > widest)
                    fail("per-layer latent width " + std::to_string(w) + " is outside the allowed range " + range(minimum, widest) + model);
        }
    }
    if (!(s.targetSaving > 0.0 && s.targetSaving < 1.0)) {
        std::ostringstream v;
        v << s.targetSaving;
        fail("--kv-saving " + v.str() + " is outside the allowed range (0, 1)");
    }
    // A saving that sets the latent must be reachable with the pairs that stay uncompressed, in every layer.
    if (s.latentDim < 0 && s.latentPerLayer.empty() && !s.allocate && s.method != LatentMethod::None) {
        for (std::int64_t l = 0; l < c.layers; ++l) {
            try {
                latentForSaving(c, ropePairsForLayer(c, s, l), s.method, s.targetSaving);
            } catch (const Error& e) {
                fail(std::string("--kv-saving: ") + e.what());
            }
        }
    }
    const std::int64_t original = c.kvElementsPerToken();
    if (s.kvBudget != -1 && (s.kvBudget < c.layers || s.kvBudget > original))
        fail("--kv-budget " + std::to_string(s.kvBudget) + " is outside the allowed range " + range(c.layers, original)
             + " (cached elements per token over all " + std::to_string(c.layers) + " layers; the model caches " + std::to_string(original) + ")");
    if (!(std::isfinite(s.refitRidge) && s.refitRidge >= 0.0))
        fail("the refit ridge must be a finite, non-negative number");
}

} // namespace mla
