#pragma once

#include "engine/transformer.h"

namespace mla {

// Scales scores [T, n] by shape.scale, masks keys a query may not see (future, or outside a sliding window) and
// applies the softmax row by row.
void maskedSoftmax(MatrixRM& scores, const AttentionShape& shape);

// DeepSeek attention's rope tables and, for the absorbed form, kv_b_proj in float32 (engine/deepseek_attention.cpp).
std::shared_ptr<const DeepSeekRuntime> makeDeepSeekRuntime(const Model& model, MlaForm form);
// The cache buffers of one DeepSeek layer: full keys and values (expanded) or the normalised latent and the rotated
// shared key head (absorbed: kv_lora_rank + qk_rope_head_dim values per token).
LayerCache makeDeepSeekLayerCache(const ModelConfig& config, std::int64_t capacity, MlaForm form);

} // namespace mla
