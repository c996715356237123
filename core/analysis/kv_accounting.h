#pragma once

#include "engine/kv_cache_format.h"
#include "model/model_config.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace mla {

// Bytes of one cached row of `elements` elements stored as `format` with groups of `groupSize` (scales included):
// CachePartFormat::rowBytes, the figure the engine allocates per row.
double cacheBytesForElements(std::int64_t elements, CacheFormat format, std::int64_t groupSize = kDefaultCacheGroupSize);

// The KV cache of a model before and after conversion: elements per token, and bytes per token in any cache format,
// computed from the same per-layer buffers (layerCacheBuffers) and row sizes the engine allocates.
struct KvAccount {
    std::vector<std::int64_t> originalPerLayer; // elements per token
    std::vector<std::int64_t> convertedPerLayer;
    std::int64_t originalTotal = 0;
    std::int64_t convertedTotal = 0;
    std::vector<std::vector<CacheBuffer>> originalBuffers; // per layer, as the engine caches them (absorbed form)
    std::vector<std::vector<CacheBuffer>> convertedBuffers;
    double saving() const; // 1 - converted / original, in elements

    double originalBytesPerToken(const KvCacheFormat& f) const;
    double convertedBytesPerToken(const KvCacheFormat& f) const;
    // With one element type for the latent (groups of `groupSize`) and the RoPE keys in their default format for it:
    // what `--kv-cache NAME` allocates.
    double originalBytesPerToken(CacheFormat f, std::int64_t groupSize = kDefaultCacheGroupSize) const;
    double convertedBytesPerToken(CacheFormat f, std::int64_t groupSize = kDefaultCacheGroupSize) const;
    // Whole-cache bytes for `context` tokens and `batch` sequences.
    double originalCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t groupSize = kDefaultCacheGroupSize) const;
    double convertedCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t groupSize = kDefaultCacheGroupSize) const;
};

// `converted` describes the MLA layers (config.mla); the original is the same model before conversion.
KvAccount kvAccount(const ModelConfig& original, const MlaConfig& converted);
KvAccount kvAccount(const ModelConfig& original, const std::vector<MlaLayerConfig>& layers);

// KV cache bytes per token of a model as it is (summed over layers, with the scale overhead of quantised formats): what
// the engine allocates for `--kv-cache NAME` (the latent part in `format`, the RoPE keys in their default for it).
double cacheBytesPerToken(const ModelConfig& config, CacheFormat format, std::int64_t groupSize = kDefaultCacheGroupSize);

} // namespace mla
