#pragma once

#include "engine/attention_plan.h"
#include "model/model_config.h"
#include "tensor/tensor.h"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace mla {

// How MLA layers run. Absorbed caches only the latent(s) and the RoPE keys (what saves memory); expanded rebuilds
// full keys and values and caches those (a check of the absorbed form, with the original's memory).
enum class MlaForm { Absorbed, Expanded };

// Per-layer cache buffers, float32, token-major ([capacity, width]); which ones exist depends on the layer.
struct LayerCache {
    MatrixRM keys;     // standard / expanded: [cap, kvHeads*headDim], RoPE applied
    MatrixRM values;   // standard / expanded, or absorbed with uncompressed values
    MatrixRM ropeKeys; // absorbed: [cap, kvHeads*2p], RoPE applied
    MatrixRM keysNope; // absorbed with uncompressed keys: [cap, kvHeads*(headDim-2p)]
    MatrixRM latentK;  // absorbed: the joint latent, or the key latent
    MatrixRM latentV;  // absorbed split / value-only: the value latent
};

// The cache buffers one layer needs for `capacity` tokens in the given form.
LayerCache makeLayerCache(const ModelConfig& config, const LayerAttentionPlan& plan, std::int64_t layer, std::int64_t capacity,
                          MlaForm form);

class KvCache {
public:
    // Refuses (an Error naming `file`, the model's) a cache larger than the memory available, before allocating.
    KvCache(const ModelConfig& config, const std::vector<LayerAttentionPlan>& plans, std::int64_t capacity, MlaForm form,
            const std::filesystem::path& file = {});

    std::int64_t capacity() const { return m_capacity; }
    std::int64_t length() const { return m_length; }
    void setLength(std::int64_t n) { m_length = n; }
    void clear() { m_length = 0; }
    MlaForm form() const { return m_form; }
    LayerCache& layer(std::int64_t l) { return m_layers[static_cast<std::size_t>(l)]; }
    const LayerCache& layer(std::int64_t l) const { return m_layers[static_cast<std::size_t>(l)]; }

    // Bytes of cache storage actually allocated, and that divided by the capacity in tokens.
    std::size_t allocatedBytes() const;
    double bytesPerToken() const;
    std::int64_t elementsPerToken() const;

private:
    std::vector<LayerCache> m_layers;
    std::int64_t m_capacity = 0;
    std::int64_t m_length = 0;
    MlaForm m_form = MlaForm::Absorbed;
};

} // namespace mla
