#include "engine/kv_cache.h"

#include "engine/attention_math.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <limits>

namespace mla {

LayerCache makeLayerCache(const ModelConfig& config, const LayerAttentionPlan& plan, std::int64_t layer, std::int64_t capacity,
                          MlaForm form)
{
    if (config.deepseek)
        return makeDeepSeekLayerCache(config, capacity, form);
    LayerCache c;
    if (!plan.latent || form == MlaForm::Expanded) {
        c.keys.resize(capacity, config.kvDim());
        c.values.resize(capacity, config.kvDim());
        return c;
    }
    const MlaLayerConfig& m = config.mla->layers[static_cast<std::size_t>(layer)];
    const std::int64_t ropeDims = 2 * plan.ropePairs;
    if (ropeDims > 0)
        c.ropeKeys.resize(capacity, config.kvHeads * ropeDims);
    if (m.compressesKeys())
        c.latentK.resize(capacity, m.latentK);
    else if (ropeDims < config.headDim)
        c.keysNope.resize(capacity, config.kvHeads * (config.headDim - ropeDims));
    if (m.method == LatentMethod::Split || m.method == LatentMethod::Value)
        c.latentV.resize(capacity, m.latentV);
    else if (!m.compressesValues())
        c.values.resize(capacity, config.kvDim());
    return c;
}

KvCache::KvCache(const ModelConfig& config, const std::vector<LayerAttentionPlan>& plans, std::int64_t capacity, MlaForm form,
                 const std::filesystem::path& file)
    : m_capacity(capacity), m_form(form)
{
    if (capacity <= 0)
        throw Error("internal: a KV cache needs a positive capacity");
    // Size it from one-position caches of each layer, and refuse before allocating what this machine cannot hold.
    std::uint64_t bytesPerPosition = 0;
    for (std::int64_t l = 0; l < config.layers; ++l) {
        const LayerCache one = makeLayerCache(config, plans[static_cast<std::size_t>(l)], l, 1, form);
        for (const MatrixRM* m : {&one.keys, &one.values, &one.ropeKeys, &one.keysNope, &one.latentK, &one.latentV})
            bytesPerPosition += static_cast<std::uint64_t>(m->size()) * sizeof(float);
    }
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(bytesPerPosition, static_cast<std::uint64_t>(capacity), &bytes))
        bytes = std::numeric_limits<std::uint64_t>::max();
    requireMemory(bytes, "a KV cache of " + std::to_string(capacity) + " positions (" + formatBytes(bytesPerPosition)
                             + " per position)", file);
    for (std::int64_t l = 0; l < config.layers; ++l)
        m_layers.push_back(makeLayerCache(config, plans[static_cast<std::size_t>(l)], l, capacity, form));
}

std::size_t KvCache::allocatedBytes() const
{
    std::size_t total = 0;
    for (const auto& c : m_layers) {
        for (const MatrixRM* m : {&c.keys, &c.values, &c.ropeKeys, &c.keysNope, &c.latentK, &c.latentV})
            total += static_cast<std::size_t>(m->size()) * sizeof(float);
    }
    return total;
}

double KvCache::bytesPerToken() const
{
    return static_cast<double>(allocatedBytes()) / static_cast<double>(m_capacity);
}

std::int64_t KvCache::elementsPerToken() const
{
    return static_cast<std::int64_t>(allocatedBytes() / sizeof(float) / static_cast<std::size_t>(m_capacity));
}

} // namespace mla
