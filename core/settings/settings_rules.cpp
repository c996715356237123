#include "settings/settings_rules.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

std::size_t count(const ModelConfig& c)
{
    return static_cast<std::size_t>(std::max<std::int64_t>(c.layers, 0));
}

// The kept-pair selection does not change any width, so a score-free one stands in for the strategy's.
std::vector<MlaLayerConfig> realisedLayers(const ConversionSettings& s, const ModelConfig& c)
{
    std::vector<LayerPairSelection> selections;
    for (std::int64_t l = 0; l < c.layers; ++l)
        selections.push_back(selectLayerPairs(c, RopeStrategy::High, ropePairsForLayer(c, s, l), 0, nullptr));
    return resolveLayerConfigs(c, s, selections);
}

// Until the allocation runs again the layers are uniform, except the locked ones, which keep the width they had.
void resetAllocation(Settings& s, const ModelConfig& c, const std::vector<std::int64_t>& before)
{
    const std::int64_t global = globalLatent(s.conversion, c);
    s.conversion.latentPerLayer.clear();
    if (global > 0)
        s.conversion.latentPerLayer = latentsWithLocks(c.layers, global, before, s.lockedLayers);
}

} // namespace

bool Settings::anyLocked() const
{
    return std::find(lockedLayers.begin(), lockedLayers.end(), true) != lockedLayers.end();
}

std::int64_t globalLatent(const ConversionSettings& s, const ModelConfig& c)
{
    if (s.method == LatentMethod::None)
        return 0;
    if (s.latentDim > 0)
        return s.latentDim;
    try {
        return latentForSaving(c, ropePairsForLayer(c, s, 0), s.method, s.targetSaving);
    } catch (const Error&) {
        return 0;
    }
}

std::vector<std::int64_t> layerLatents(const ConversionSettings& s, const ModelConfig& c)
{
    std::vector<std::int64_t> out;
    try {
        for (const MlaLayerConfig& m : realisedLayers(s, c))
            out.push_back(m.latentK + m.latentV);
    } catch (const Error&) {
        out.clear();
    }
    return out;
}

std::vector<std::int64_t> latentsWithLocks(std::int64_t layers, std::int64_t latent, const std::vector<std::int64_t>& current,
                                           const std::vector<bool>& locked)
{
    if (std::find(locked.begin(), locked.end(), true) == locked.end())
        return {};
    std::vector<std::int64_t> out(static_cast<std::size_t>(std::max<std::int64_t>(layers, 0)), latent);
    for (std::size_t l = 0; l < out.size() && l < locked.size(); ++l) {
        if (locked[l] && l < current.size())
            out[l] = current[l];
    }
    return out;
}

void normalise(Settings& s, const ModelConfig& c)
{
    s.lockedLayers.resize(count(c), false);
    if (s.conversion.allocate)
        return; // the per-layer lists come from the allocation (locks are honoured when it runs)
    if (!s.anyLocked()) {
        s.conversion.latentPerLayer.clear();
        return;
    }
    const std::int64_t global = globalLatent(s.conversion, c);
    if (global <= 0)
        return; // unreachable settings: the preview reports the problem
    std::vector<std::int64_t> current = s.conversion.latentPerLayer;
    if (current.size() != count(c))
        current.assign(count(c), global);
    s.conversion.latentPerLayer = latentsWithLocks(c.layers, global, current, s.lockedLayers);
}

Settings defaultsFor(Settings s, const ModelConfig& c)
{
    ConversionSettings& x = s.conversion;
    x.ropePairs = -1; // the model's default, resolved where used; an explicit count is the user's choice
    x.ropePairsPerLayer.clear();
    x.latentPerLayer.clear();
    x.uniformStart = std::clamp<std::int64_t>(x.uniformStart, 0, std::max<std::int64_t>(c.pairsPerHead() - 1, 0));
    if (!(x.targetSaving > 0.0 && x.targetSaving < 1.0))
        x.targetSaving = 0.75;
    x.latentDim = -1; // follow the target saving until the user sets a width
    x.kvBudget = -1;  // a budget counts this model's elements
    s.lockedLayers.assign(count(c), false);
    return s;
}

Settings withGlobalLatent(const Settings& before, const ModelConfig& c, std::int64_t latent)
{
    Settings after = before;
    after.conversion.latentDim = latent;
    after.conversion.ropePairsPerLayer.clear(); // a global move makes the layers uniform again (locks aside)
    if (after.conversion.allocate)
        resetAllocation(after, c, layerLatents(before.conversion, c)); // the budget moved: allocate again
    normalise(after, c);
    return after;
}

Settings withTargetSaving(const Settings& before, const ModelConfig& c, double saving)
{
    Settings after = before;
    after.conversion.latentDim = -1;
    after.conversion.targetSaving = saving;
    after.conversion.ropePairsPerLayer.clear();
    if (after.conversion.allocate)
        resetAllocation(after, c, layerLatents(before.conversion, c));
    normalise(after, c);
    return after;
}

Settings withLayerLatent(const Settings& before, const ModelConfig& c, std::int64_t layer, std::int64_t latent)
{
    if (layer < 0 || layer >= c.layers || latent < 1)
        return before;
    Settings after = before;
    after.lockedLayers.resize(count(c), false);
    after.lockedLayers[static_cast<std::size_t>(layer)] = true;
    std::vector<std::int64_t> current = layerLatents(before.conversion, c);
    current.resize(count(c), globalLatent(before.conversion, c));
    current[static_cast<std::size_t>(layer)] = latent;
    after.conversion.latentPerLayer = current;
    normalise(after, c);
    return after;
}

Settings withLayerLocked(const Settings& before, const ModelConfig& c, std::int64_t layer, bool locked)
{
    if (layer < 0 || layer >= c.layers)
        return before;
    Settings after = before;
    after.lockedLayers.resize(count(c), false);
    after.lockedLayers[static_cast<std::size_t>(layer)] = locked;
    after.conversion.latentPerLayer = layerLatents(before.conversion, c);
    if (!locked && after.conversion.allocate) {
        // Under allocation the per-layer list is kept as it is (normalise leaves it alone), so the released layer goes
        // back to the global width here; the other layers keep what the allocation gave them.
        const std::int64_t global = globalLatent(after.conversion, c);
        if (global > 0 && static_cast<std::size_t>(layer) < after.conversion.latentPerLayer.size())
            after.conversion.latentPerLayer[static_cast<std::size_t>(layer)] = global;
    }
    normalise(after, c);
    return after;
}

Settings withAllocation(const Settings& before, const Allocation& allocation)
{
    Settings after = before;
    after.conversion.ropePairsPerLayer = allocation.pairs;
    after.conversion.latentPerLayer = allocation.latent;
    return after;
}

std::int64_t allocationBudget(const Settings& s, const ModelConfig& c)
{
    const ConversionSettings& x = s.conversion;
    if (x.kvBudget > 0)
        return x.kvBudget;
    if (x.latentDim > 0) {
        ConversionSettings uniform = x;
        uniform.ropePairsPerLayer.clear();
        uniform.latentPerLayer = latentsWithLocks(c.layers, x.latentDim, layerLatents(x, c), s.lockedLayers);
        std::int64_t total = 0;
        for (const MlaLayerConfig& m : realisedLayers(uniform, c))
            total += m.cacheElements(c.kvHeads, c.headDim);
        return total;
    }
    if (!(x.targetSaving > 0.0 && x.targetSaving < 1.0))
        throw Error("the KV saving must be between 0 and 1");
    return static_cast<std::int64_t>(std::llround((1.0 - x.targetSaving) * static_cast<double>(c.kvElementsPerToken())));
}

std::vector<bool> inferredLocks(const ConversionSettings& s, const ModelConfig& c)
{
    if (s.allocate || s.latentPerLayer.empty() || static_cast<std::int64_t>(s.latentPerLayer.size()) != c.layers)
        return {};
    const std::int64_t global = globalLatent(s, c);
    std::vector<bool> locked(s.latentPerLayer.size(), false);
    bool any = false;
    for (std::size_t l = 0; l < locked.size(); ++l) {
        locked[l] = global <= 0 || s.latentPerLayer[l] != global;
        any = any || locked[l];
    }
    return any ? locked : std::vector<bool>{};
}

bool allocationPending(const ConversionSettings& s)
{
    return s.allocate && s.latentPerLayer.empty();
}

} // namespace mla
