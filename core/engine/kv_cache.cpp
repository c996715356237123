#include "engine/kv_cache.h"

#include "util/error.h"
#include "util/memory_budget.h"

#include <limits>

namespace mla {

CacheRows& LayerCache::buffer(CacheRole role)
{
    switch (role) {
    case CacheRole::Keys:
        return keys;
    case CacheRole::Values:
        return values;
    case CacheRole::RopeKeys:
        return ropeKeys;
    case CacheRole::KeysNope:
        return keysNope;
    case CacheRole::LatentK:
        return latentK;
    case CacheRole::LatentV:
        return latentV;
    }
    throw Error("internal: unknown cache role");
}

const CacheRows& LayerCache::buffer(CacheRole role) const
{
    return const_cast<LayerCache*>(this)->buffer(role);
}

std::size_t LayerCache::allocatedBytes() const
{
    std::size_t total = 0;
    for (const CacheRows* b : {&keys, &values, &ropeKeys, &keysNope, &latentK, &latentV})
        total += b->allocatedBytes();
    return total;
}

LayerCache makeLayerCache(const ModelConfig& config, std::int64_t layer, std::int64_t capacity, MlaForm form,
                          const KvCacheFormat& format)
{
    LayerCache c;
    for (const CacheBuffer& b : layerCacheBuffers(config, layer, form))
        c.buffer(b.role) = CacheRows(capacity, b.width, partFormat(format, b.role));
    return c;
}

KvCache::KvCache(const ModelConfig& config, std::int64_t capacity, MlaForm form, const KvCacheFormat& format,
                 const std::filesystem::path& file)
    : m_capacity(capacity), m_form(form), m_format(format)
{
    if (capacity <= 0)
        throw Error("internal: a KV cache needs a positive capacity");
    // Refuse before allocating what this machine cannot hold.
    const std::uint64_t bytesPerPosition = cacheBytesPerToken(config, form, format);
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(bytesPerPosition, static_cast<std::uint64_t>(capacity), &bytes))
        bytes = std::numeric_limits<std::uint64_t>::max();
    requireMemory(bytes, "a KV cache of " + std::to_string(capacity) + " positions (" + formatBytes(bytesPerPosition)
                             + " per position)", file);
    for (std::int64_t l = 0; l < config.layers; ++l) {
        m_layers.push_back(makeLayerCache(config, l, capacity, form, format));
        for (const CacheBuffer& b : layerCacheBuffers(config, l, form))
            m_elementsPerToken += b.width;
    }
}

std::size_t KvCache::allocatedBytes() const
{
    std::size_t total = 0;
    for (const auto& c : m_layers)
        total += c.allocatedBytes();
    return total;
}

double KvCache::bytesPerToken() const
{
    return static_cast<double>(allocatedBytes()) / static_cast<double>(m_capacity);
}

std::int64_t KvCache::elementsPerToken() const
{
    return m_elementsPerToken;
}

} // namespace mla
