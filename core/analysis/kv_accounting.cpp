#include "analysis/kv_accounting.h"

namespace mla {
namespace {

double bytes(const std::vector<std::vector<CacheBuffer>>& layers, const KvCacheFormat& f)
{
    double total = 0.0;
    for (const auto& buffers : layers) {
        for (const CacheBuffer& b : buffers)
            total += static_cast<double>(partFormat(f, b.role).rowBytes(b.width));
    }
    return total;
}

KvCacheFormat latentFormat(CacheFormat f, std::int64_t groupSize)
{
    return KvCacheFormat::withDefaultRope(CachePartFormat{f, groupSize});
}

std::int64_t elements(const std::vector<CacheBuffer>& buffers)
{
    std::int64_t n = 0;
    for (const CacheBuffer& b : buffers)
        n += b.width;
    return n;
}

} // namespace

double cacheBytesForElements(std::int64_t elements, CacheFormat format, std::int64_t groupSize)
{
    return static_cast<double>(CachePartFormat{format, groupSize}.rowBytes(elements));
}

double KvAccount::saving() const
{
    return originalTotal > 0 ? 1.0 - static_cast<double>(convertedTotal) / static_cast<double>(originalTotal) : 0.0;
}

double KvAccount::originalBytesPerToken(const KvCacheFormat& f) const { return bytes(originalBuffers, f); }
double KvAccount::convertedBytesPerToken(const KvCacheFormat& f) const { return bytes(convertedBuffers, f); }

double KvAccount::originalBytesPerToken(CacheFormat f, std::int64_t g) const { return originalBytesPerToken(latentFormat(f, g)); }
double KvAccount::convertedBytesPerToken(CacheFormat f, std::int64_t g) const { return convertedBytesPerToken(latentFormat(f, g)); }

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
    ModelConfig plain = original;
    plain.mla.reset();
    ModelConfig converted = plain;
    converted.mla = MlaConfig{};
    converted.mla->layers = layers;
    for (std::int64_t l = 0; l < original.layers; ++l) {
        a.originalBuffers.push_back(layerCacheBuffers(plain, l, MlaForm::Absorbed));
        a.convertedBuffers.push_back(static_cast<std::size_t>(l) < layers.size() ? layerCacheBuffers(converted, l, MlaForm::Absorbed)
                                                                                 : a.originalBuffers.back());
        a.originalPerLayer.push_back(elements(a.originalBuffers.back()));
        a.convertedPerLayer.push_back(elements(a.convertedBuffers.back()));
        a.originalTotal += a.originalPerLayer.back();
        a.convertedTotal += a.convertedPerLayer.back();
    }
    return a;
}

KvAccount kvAccount(const ModelConfig& original, const MlaConfig& converted)
{
    return kvAccount(original, converted.layers);
}

double cacheBytesPerToken(const ModelConfig& config, CacheFormat format, std::int64_t groupSize)
{
    return static_cast<double>(cacheBytesPerToken(config, MlaForm::Absorbed, latentFormat(format, groupSize)));
}

} // namespace mla
