#include "settings/preset_comparison.h"

#include "conversion/presets.h"
#include "settings/settings_rules.h"

namespace mla {
namespace {

// The recipe only: what stays when the widths a user or an allocation set per layer are ignored.
ConversionSettings presetComparisonRecipe(ConversionSettings s)
{
    s.ropePairsPerLayer.clear();
    s.latentPerLayer.clear();
    s.preset.clear();
    return s;
}

} // namespace

Settings presetSettings(const Settings& current, const ModelConfig& config, const std::string& preset)
{
    Settings out = current;
    applyPreset(preset, out.conversion);
    const std::vector<std::int64_t> widths = layerLatents(current.conversion, config);
    out.conversion.ropePairsPerLayer.clear();
    out.conversion.latentPerLayer.clear();
    if (out.anyLocked()) {
        const std::int64_t global = globalLatent(out.conversion, config);
        if (global > 0)
            out.conversion.latentPerLayer = latentsWithLocks(config.layers, global, widths, out.lockedLayers);
        if (out.conversion.allocate)
            return out; // normalise keeps an allocation's lists as they are; the locked widths are the ones above
    }
    normalise(out, config);
    return out;
}

PresetComparison comparePreset(const AnalysisResult& analysis, const Settings& current, const std::string& preset,
                               const Allocation* allocation, std::int64_t parameterCount)
{
    const ModelConfig& config = analysis.config;
    PresetComparison out;
    out.settings = presetSettings(current, config, preset);
    const ConversionSettings& p = out.settings.conversion;
    const bool sameRecipe = presetComparisonRecipe(p) == presetComparisonRecipe(current.conversion);
    if (p.allocate) {
        if (allocation)
            out.settings = withAllocation(out.settings, *allocation);
        else
            out.allocationMissing = true;
        // The current per-layer widths are the preset's only when they are its measured allocation (an "Allocate now"
        // with the same recipe gives exactly these lists).
        const ConversionSettings& c = current.conversion;
        out.sameAsCurrent = sameRecipe && allocation && c.latentPerLayer == allocation->latent && c.ropePairsPerLayer == allocation->pairs;
    } else {
        out.sameAsCurrent = sameRecipe && current.conversion.latentPerLayer == p.latentPerLayer
                            && current.conversion.ropePairsPerLayer == p.ropePairsPerLayer;
    }
    out.preview = previewConversion(analysis, out.settings.conversion, parameterCount);
    out.useActivation = p.activationAware && out.preview.meanActivationError >= 0;
    return out;
}

} // namespace mla
