#include "engine/kv_cache_format.h"

#include "util/error.h"

#include <algorithm>
#include <charconv>

namespace mla {
namespace {

struct CacheFormatRow {
    CacheFormat format;
    std::string_view name;
    int bitsPerElement;
    int levels; // 0: a float type
};

// Quantised types store an F16 scale and an F16 minimum (zero point) per group, asymmetric per-token quantisation
// as in KIVI: post-RoPE keys and latents are not centred on zero, and the minimum costs 2 bytes per group
// (docs/kv-cache.md, "Scale and zero point").
constexpr CacheFormatRow kCacheFormats[] = {
    {CacheFormat::F32, "f32", 32, 0},
    {CacheFormat::BF16, "bf16", 16, 0},
    {CacheFormat::Int8, "int8", 8, 255},
    {CacheFormat::Int4, "int4", 4, 15},
};

const CacheFormatRow& row(CacheFormat f)
{
    return kCacheFormats[static_cast<int>(f)];
}

struct CacheRoleRow {
    CacheRole role;
    std::string_view name;
};

constexpr CacheRoleRow kCacheRoles[] = {
    {CacheRole::Keys, "keys"},         {CacheRole::Values, "values"},    {CacheRole::RopeKeys, "rope_keys"},
    {CacheRole::KeysNope, "keys_nope"}, {CacheRole::LatentK, "latent_k"}, {CacheRole::LatentV, "latent_v"},
};

} // namespace

std::string_view cacheFormatName(CacheFormat f)
{
    return row(f).name;
}

bool parseCacheFormat(std::string_view name, CacheFormat& out)
{
    for (const auto& r : kCacheFormats) {
        if (r.name == name) {
            out = r.format;
            return true;
        }
    }
    return false;
}

int cacheFormatLevels(CacheFormat f)
{
    return row(f).levels;
}

bool cacheFormatIsQuantised(CacheFormat f)
{
    return row(f).levels > 0;
}

std::int64_t CachePartFormat::groupWidth(std::int64_t rowWidth) const
{
    return std::max<std::int64_t>(1, std::min(std::max<std::int64_t>(groupSize, 1), rowWidth));
}

std::int64_t CachePartFormat::groups(std::int64_t rowWidth) const
{
    if (!quantised() || rowWidth <= 0)
        return 0;
    const std::int64_t g = groupWidth(rowWidth);
    return (rowWidth + g - 1) / g;
}

std::size_t CachePartFormat::dataBytes(std::int64_t rowWidth) const
{
    const auto bits = static_cast<std::size_t>(row(type).bitsPerElement) * static_cast<std::size_t>(std::max<std::int64_t>(rowWidth, 0));
    return (bits + 7) / 8;
}

std::size_t CachePartFormat::paramBytes() const
{
    if (!quantised())
        return 0;
    return 4; // F16 scale, F16 minimum
}

std::size_t CachePartFormat::rowBytes(std::int64_t rowWidth) const
{
    return dataBytes(rowWidth) + static_cast<std::size_t>(groups(rowWidth)) * paramBytes();
}

std::string cachePartName(const CachePartFormat& f)
{
    std::string name(cacheFormatName(f.type));
    if (f.quantised())
        name += "/" + std::to_string(f.groupSize);
    return name;
}

bool parseCachePart(std::string_view name, CachePartFormat& out)
{
    const std::size_t slash = name.find('/');
    CachePartFormat f;
    if (!parseCacheFormat(name.substr(0, slash), f.type))
        return false;
    if (slash != std::string_view::npos) {
        if (!f.quantised())
            return false;
        const std::string_view digits = name.substr(slash + 1);
        std::int64_t g = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), g);
        if (ec != std::errc() || end != digits.data() + digits.size() || g < 1 || g > kMaxCacheGroupSize)
            return false;
        f.groupSize = g;
    }
    out = f;
    return true;
}

CachePartFormat defaultRopeFormat(const CachePartFormat& latent)
{
    if (latent.type == CacheFormat::Int4)
        return {CacheFormat::Int8, latent.groupSize};
    return latent;
}

KvCacheFormat KvCacheFormat::withDefaultRope(const CachePartFormat& latent)
{
    return {latent, defaultRopeFormat(latent)};
}

std::string kvCacheFormatName(const KvCacheFormat& f)
{
    if (f.latent == f.rope)
        return cachePartName(f.latent);
    return cachePartName(f.latent) + "+rope:" + cachePartName(f.rope);
}

bool parseKvCacheFormat(std::string_view name, KvCacheFormat& out)
{
    constexpr std::string_view kRope = "+rope:";
    const std::size_t at = name.find(kRope);
    KvCacheFormat f;
    if (!parseCachePart(name.substr(0, at), f.latent))
        return false;
    if (at == std::string_view::npos)
        f.rope = defaultRopeFormat(f.latent);
    else if (!parseCachePart(name.substr(at + kRope.size()), f.rope))
        return false;
    out = f;
    return true;
}

KvCacheFormat kvCacheFormatFromSettings(std::string_view latent, std::string_view rope, std::int64_t groupSize)
{
    if (groupSize != 0 && (groupSize < 1 || groupSize > kMaxCacheGroupSize))
        throw Error("the KV cache group size must be between 1 and " + std::to_string(kMaxCacheGroupSize) + ", got "
                    + std::to_string(groupSize));
    auto part = [&](std::string_view name, const char* what) {
        CachePartFormat f;
        if (!parseCachePart(name, f))
            throw Error("unknown " + std::string(what) + " format '" + std::string(name)
                        + "' (use f32, bf16, int8 or int4, optionally with a group size: int4/32)");
        if (groupSize != 0 && name.find('/') == std::string_view::npos)
            f.groupSize = groupSize;
        return f;
    };
    KvCacheFormat f;
    if (!latent.empty())
        f.latent = part(latent, "KV cache");
    else if (groupSize != 0)
        f.latent.groupSize = groupSize;
    f.rope = rope.empty() ? defaultRopeFormat(f.latent) : part(rope, "RoPE-key cache");
    return f;
}

std::string_view cacheRoleName(CacheRole r)
{
    return kCacheRoles[static_cast<int>(r)].name;
}

std::vector<CacheBuffer> layerCacheBuffers(const ModelConfig& config, std::int64_t layer, MlaForm form)
{
    if (config.deepseek) {
        // DeepSeek-V2/V3: full keys and values (expanded), or the normalised latent and the rotated shared key head.
        const DeepSeekAttentionConfig& a = *config.deepseek;
        if (form == MlaForm::Expanded)
            return {{CacheRole::Keys, config.heads * a.qkHeadDim()}, {CacheRole::Values, config.heads * a.valueDim}};
        return {{CacheRole::RopeKeys, a.ropeDim}, {CacheRole::LatentK, a.kvLoraRank}};
    }
    if (!config.isMla() || form == MlaForm::Expanded)
        return {{CacheRole::Keys, config.kvDim()}, {CacheRole::Values, config.kvDim()}};
    const MlaLayerConfig& m = config.mla->layers[static_cast<std::size_t>(layer)];
    const std::int64_t ropeDims = 2 * m.ropePairs();
    std::vector<CacheBuffer> buffers;
    if (ropeDims > 0)
        buffers.push_back({CacheRole::RopeKeys, config.kvHeads * ropeDims});
    if (m.compressesKeys())
        buffers.push_back({CacheRole::LatentK, m.latentK});
    else if (ropeDims < config.headDim)
        buffers.push_back({CacheRole::KeysNope, config.kvHeads * (config.headDim - ropeDims)});
    if (m.method == LatentMethod::Split || m.method == LatentMethod::Value)
        buffers.push_back({CacheRole::LatentV, m.latentV});
    else if (!m.compressesValues())
        buffers.push_back({CacheRole::Values, config.kvDim()});
    return buffers;
}

const CachePartFormat& partFormat(const KvCacheFormat& format, CacheRole role)
{
    return role == CacheRole::RopeKeys ? format.rope : format.latent;
}

std::size_t layerCacheBytesPerToken(const ModelConfig& config, std::int64_t layer, MlaForm form, const KvCacheFormat& format)
{
    std::size_t bytes = 0;
    for (const CacheBuffer& b : layerCacheBuffers(config, layer, form))
        bytes += partFormat(format, b.role).rowBytes(b.width);
    return bytes;
}

std::size_t cacheBytesPerToken(const ModelConfig& config, MlaForm form, const KvCacheFormat& format)
{
    std::size_t bytes = 0;
    for (std::int64_t l = 0; l < config.layers; ++l)
        bytes += layerCacheBytesPerToken(config, l, form, format);
    return bytes;
}

} // namespace mla
