#pragma once

#include "model/model_config.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// How the KV cache stores a token (docs/kv-cache.md): which rows each layer caches, the element type of each part,
// and the bytes a row takes. Both the engine's allocation and the preview's accounting (kv_accounting) are computed
// from the functions here, so the bytes the preview promises are the bytes the engine allocates.
namespace mla {

// How MLA layers run. Absorbed caches only the latent(s) and the RoPE keys (what saves memory); expanded rebuilds
// full keys and values and caches those (a check of the absorbed form, with the original's memory).
enum class MlaForm { Absorbed, Expanded };

// Element type of a cached row. Quantised types store, per group of consecutive elements of the row, an F16 scale
// and an F16 minimum (the zero point); see kv_codec.h for the exact encoding.
enum class CacheFormat { F32, BF16, Int8, Int4 };

std::string_view cacheFormatName(CacheFormat f); // f32, bf16, int8, int4
bool parseCacheFormat(std::string_view name, CacheFormat& out);
// Integer levels of a quantised type (0 for float types): codes run over [0, levels] (int8: 255, int4: 15).
int cacheFormatLevels(CacheFormat f);
bool cacheFormatIsQuantised(CacheFormat f);

inline constexpr std::int64_t kDefaultCacheGroupSize = 64;
inline constexpr std::int64_t kMaxCacheGroupSize = 1 << 16;

// How one part of the cache stores each token's row: the element type and, for quantised types, the group size
// (a row narrower than the group is one group).
struct CachePartFormat {
    CacheFormat type = CacheFormat::F32;
    std::int64_t groupSize = kDefaultCacheGroupSize;

    bool quantised() const { return cacheFormatIsQuantised(type); }
    std::int64_t groupWidth(std::int64_t rowWidth) const; // min(groupSize, rowWidth), at least 1
    std::int64_t groups(std::int64_t rowWidth) const;     // groups in a row (0 for float types)
    std::size_t dataBytes(std::int64_t rowWidth) const;   // the elements (int4: two per byte, rounded up)
    std::size_t paramBytes() const;                       // per group: F16 scale and F16 minimum
    // Bytes one cached row of `rowWidth` elements takes, scales included: what the engine allocates per row.
    std::size_t rowBytes(std::int64_t rowWidth) const;
    bool operator==(const CachePartFormat&) const = default;
};

// "f32", "bf16", "int8/64", "int4/32": the type, and for quantised types "/" and the group size.
std::string cachePartName(const CachePartFormat& f);
// Accepts what cachePartName prints, and a quantised type without a group ("int4": the default group). Returns
// false for anything else, a group size on a float type, or a group size outside [1, kMaxCacheGroupSize].
bool parseCachePart(std::string_view name, CachePartFormat& out);

// The cache format of a model run: one format for the RoPE keys of MLA layers and one for every other cached row
// (the latent(s), uncompressed key/value parts of MLA layers, and the keys and values of original layers).
struct KvCacheFormat {
    CachePartFormat latent;
    CachePartFormat rope;

    // `latent` for both parts.
    static KvCacheFormat uniform(const CachePartFormat& part) { return {part, part}; }
    // `latent` and the RoPE part chosen for it by default (defaultRopeFormat).
    static KvCacheFormat withDefaultRope(const CachePartFormat& latent);
    bool isFloat32() const { return latent.type == CacheFormat::F32 && rope.type == CacheFormat::F32; }
    bool operator==(const KvCacheFormat&) const = default;
};

// The RoPE-key format used when only the latent's is given: chosen by measurement, docs/kv-cache.md says which
// and why.
CachePartFormat defaultRopeFormat(const CachePartFormat& latent);

// "int4/64" when both parts are equal, else "int4/64+rope:bf16".
std::string kvCacheFormatName(const KvCacheFormat& f);
// Accepts what kvCacheFormatName prints; a single part name sets the latent part and the default RoPE part.
bool parseKvCacheFormat(std::string_view name, KvCacheFormat& out);

// The format from a user's settings, each possibly absent (empty / 0): `latent` and `rope` part names (a missing
// RoPE part takes defaultRopeFormat of the latent; a missing latent is f32), and a group size for the parts whose
// name carries none. Throws Error naming the setting that is not valid.
KvCacheFormat kvCacheFormatFromSettings(std::string_view latent, std::string_view rope, std::int64_t groupSize);

// Every buffer a layer's cache holds, one row per token.
enum class CacheRole {
    Keys,     // original layer or expanded MLA: [kvHeads*headDim], RoPE applied
    Values,   // original / expanded, or absorbed MLA with uncompressed values
    RopeKeys, // absorbed MLA: the kept RoPE dims of each KV head [kvHeads*2p], RoPE applied
    KeysNope, // absorbed MLA with uncompressed keys: [kvHeads*(headDim-2p)]
    LatentK,  // absorbed MLA: the joint latent, or the key latent
    LatentV,  // absorbed MLA, split / value-only: the value latent
};
inline constexpr int kCacheRoleCount = 6;
std::string_view cacheRoleName(CacheRole r);

struct CacheBuffer {
    CacheRole role = CacheRole::Keys;
    std::int64_t width = 0; // elements per token
};

// The buffers one layer caches, in a fixed order. `config` is the model as it runs (config.mla present for a
// converted model, config.deepseek for a DeepSeek-V2/V3 one).
std::vector<CacheBuffer> layerCacheBuffers(const ModelConfig& config, std::int64_t layer, MlaForm form);

// The format of a buffer's rows: the RoPE part for RoPE keys, the latent part for everything else.
const CachePartFormat& partFormat(const KvCacheFormat& format, CacheRole role);

// Bytes per token of one layer / of the whole model: the sum of rowBytes over the layer's buffers.
std::size_t layerCacheBytesPerToken(const ModelConfig& config, std::int64_t layer, MlaForm form, const KvCacheFormat& format);
std::size_t cacheBytesPerToken(const ModelConfig& config, MlaForm form, const KvCacheFormat& format);

} // namespace mla
