#include "analysis/kv_accounting.h"

#include <cmath>

namespace mla {
namespace {

struct CacheFormatRow {
    CacheFormat format;
    std::string_view name;
    double bytesPerElement;
    bool grouped;
};

constexpr CacheFormatRow kCacheFormats[] = {
    {CacheFormat::F32, "f32", 4.0, false},
    {CacheFormat::BF16, "bf16", 2.0, false},
    {CacheFormat::Int8, "int8", 1.0, true},
    {CacheFormat::Int4, "int4", 0.5, true},
};

constexpr double kGroupOverheadBytes = 4.0; // F16 scale + F16 zero point

double bytes(const std::vector<std::int64_t>& perLayer, CacheFormat f, std::int64_t groupSize)
{
    double total = 0.0;
    for (auto e : perLayer)
        total += cacheBytesForElements(e, f, groupSize);
    return total;
}

} // namespace

std::string_view cacheFormatName(CacheFormat f)
{
    return kCacheFormats[static_cast<int>(f)].name;
}

bool parseCacheFormat(std::string_view name, CacheFormat& out)
{
    for (const auto& row : kCacheFormats) {
        if (row.name == name) {
            out = row.format;
            return true;
        }
    }
    return false;
}

double cacheBytesForElements(std::int64_t elements, CacheFormat format, std::int64_t groupSize)
{
    const CacheFormatRow& row = kCacheFormats[static_cast<int>(format)];
    double b = static_cast<double>(elements) * row.bytesPerElement;
    if (row.grouped && elements > 0) {
        const std::int64_t g = std::max<std::int64_t>(groupSize, 1);
        b += static_cast<double>((elements + g - 1) / g) * kGroupOverheadBytes;
    }
    return b;
}

double KvAccount::saving() const
{
    return originalTotal > 0 ? 1.0 - static_cast<double>(convertedTotal) / static_cast<double>(originalTotal) : 0.0;
}

double KvAccount::originalBytesPerToken(CacheFormat f, std::int64_t g) const { return bytes(originalPerLayer, f, g); }
double KvAccount::convertedBytesPerToken(CacheFormat f, std::int64_t g) const { return bytes(convertedPerLayer, f, g); }

double KvAccount::originalCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t g) const
{
    return originalBytesPerToken(f, g) * static_cast<double>(context) * static_cast<double>(batch);
}

double KvAccount::convertedCacheBytes(std::int64_t context, std::int64_t batch, CacheFormat f, std::int64_t g) const
{
    return convertedBytesPerToken(f, g) * static_cast<double>(context) * static_cast<double>(batch);
}

KvAccount kvAccount(const ModelConfig& original, const std::vector<MlaLayerConfig>& layers)
{
    KvAccount a;
    for (std::int64_t l = 0; l < original.layers; ++l) {
        const std::int64_t before = 2 * original.kvHeads * original.headDim;
        const std::int64_t after = static_cast<std::size_t>(l) < layers.size()
                                       ? layers[static_cast<std::size_t>(l)].cacheElements(original.kvHeads, original.headDim)
                                       : before;
        a.originalPerLayer.push_back(before);
        a.convertedPerLayer.push_back(after);
        a.originalTotal += before;
        a.convertedTotal += after;
    }
    return a;
}

KvAccount kvAccount(const ModelConfig& original, const MlaConfig& converted)
{
    return kvAccount(original, converted.layers);
}

double cacheBytesPerToken(const ModelConfig& config, CacheFormat format, std::int64_t groupSize)
{
    double total = 0.0;
    for (std::int64_t l = 0; l < config.layers; ++l)
        total += cacheBytesForElements(config.kvElementsPerTokenInLayer(l), format, groupSize);
    return total;
}

} // namespace mla
