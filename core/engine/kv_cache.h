#pragma once

#include "engine/attention_plan.h"
#include "engine/cache_rows.h"
#include "engine/kv_cache_format.h"
#include "model/model_config.h"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace mla {

// Per-layer cache buffers, token-major, each in its part's format (layerCacheBuffers says which exist).
struct LayerCache {
    CacheRows keys;     // standard / expanded: [cap, kvHeads*headDim], RoPE applied
    CacheRows values;   // standard / expanded, or absorbed with uncompressed values
    CacheRows ropeKeys; // absorbed: [cap, kvHeads*2p], RoPE applied
    CacheRows keysNope; // absorbed with uncompressed keys: [cap, kvHeads*(headDim-2p)]
    CacheRows latentK;  // absorbed: the joint latent, or the key latent
    CacheRows latentV;  // absorbed split / value-only: the value latent

    CacheRows& buffer(CacheRole role);
    const CacheRows& buffer(CacheRole role) const;
    std::size_t allocatedBytes() const;
};

// The cache buffers one layer needs for `capacity` tokens in the given form and format.
LayerCache makeLayerCache(const ModelConfig& config, std::int64_t layer, std::int64_t capacity, MlaForm form,
                          const KvCacheFormat& format = {});

class KvCache {
public:
    // Refuses (an Error naming `file`, the model's) a cache larger than the memory available, before allocating.
    KvCache(const ModelConfig& config, std::int64_t capacity, MlaForm form, const KvCacheFormat& format = {},
            const std::filesystem::path& file = {});

    std::int64_t capacity() const { return m_capacity; }
    std::int64_t length() const { return m_length; }
    void setLength(std::int64_t n) { m_length = n; }
    void clear() { m_length = 0; }
    MlaForm form() const { return m_form; }
    const KvCacheFormat& format() const { return m_format; }
    LayerCache& layer(std::int64_t l) { return m_layers[static_cast<std::size_t>(l)]; }
    const LayerCache& layer(std::int64_t l) const { return m_layers[static_cast<std::size_t>(l)]; }

    // Bytes of cache storage actually allocated (scales included), and that divided by the capacity in tokens: equal
    // to cacheBytesPerToken(config, form, format), the formula the preview uses.
    std::size_t allocatedBytes() const;
    double bytesPerToken() const;
    std::int64_t elementsPerToken() const;

private:
    std::vector<LayerCache> m_layers;
    std::int64_t m_capacity = 0;
    std::int64_t m_length = 0;
    MlaForm m_form = MlaForm::Absorbed;
    KvCacheFormat m_format;
    std::int64_t m_elementsPerToken = 0;
};

} // namespace mla
