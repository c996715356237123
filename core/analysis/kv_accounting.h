#pragma once

#include "model/model_config.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace mla {

// How cached elements are stored. Quantised formats keep an F16 scale and an F16 zero point per group of
// `groupSize` consecutive elements of a token's cached vector in a layer (KIVI-style asymmetric quantisation).
enum class CacheFormat { F32, BF16, Int8, Int4 };

std::string_view cacheFormatName(CacheFormat f); // f32, bf16, int8, int4
bool parseCacheFormat(std::string_view name, CacheFormat& out);

// Bytes per token for `elements` cached in one layer.
double cacheBytesForElements(std::int64_t elements, CacheFormat format, std::int64_t groupSize = 64);

struct KvAccount {
    std::vector<std::int64_t> originalPerLayer; // elements per token
    std::vector<std::int64_t> convertedPerLayer;
    std::int64_t originalTotal = 0;
    std::int64_t convertedTotal = 0;
    double saving() const; // 1 - converted / original

    double originalBytesPerToken(CacheFormat f, std::int64_t groupSize = 64) const;
    double convertedBytesPerToken(CacheFormat f, std::int64_t groupSize = 64) const;
    // Whole-cache bytes for `context` tokens and `batch` sequences.
    double originalCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t groupSize = 64) const;
    double convertedCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t groupSize = 64) const;
};

// `converted` describes the MLA layers (config.mla); the original is the same model before conversion.
KvAccount kvAccount(const ModelConfig& original, const MlaConfig& converted);
KvAccount kvAccount(const ModelConfig& original, const std::vector<MlaLayerConfig>& layers);

// KV cache bytes per token of a model as it is (summed over layers, with the scale overhead of quantised formats).
double cacheBytesPerToken(const ModelConfig& config, CacheFormat format, std::int64_t groupSize = 64);

} // namespace mla
