#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mla {

// How the position-free key part (k_nope) and the values are compressed (method document, section 2). Names follow
// the MHA2MLA public code's svd_init_method.
enum class LatentMethod {
    Joint, // one latent c = W_dkv x shared by k_nope and v
    Split, // two latents, one for k_nope and one for v
    Key,   // only k_nope through a latent; v full
    Value, // only v through a latent; k_nope full
    None,  // no latent: partial-RoPE only
};

std::string_view latentMethodName(LatentMethod m);        // joint, split, key, value, none
std::string_view latentMethodPublicName(LatentMethod m);  // joint, split, only_key, only_value, none
bool parseLatentMethod(std::string_view name, LatentMethod& out); // accepts both spellings

// One attention layer after conversion.
struct MlaLayerConfig {
    // Frequency pairs that keep their rotation, per KV head, ascending (pair j = dims (j, j + d_h/2) of the head).
    // Every KV head of a layer keeps the same number of pairs.
    std::vector<std::vector<int>> keptPairs;
    LatentMethod method = LatentMethod::Joint;
    std::int64_t latentK = 0; // joint: the shared latent width d_c; split/key: width of the key latent
    std::int64_t latentV = 0; // split/value: width of the value latent; 0 otherwise

    std::int64_t ropePairs() const { return keptPairs.empty() ? 0 : static_cast<std::int64_t>(keptPairs[0].size()); }
    bool compressesKeys() const { return method == LatentMethod::Joint || method == LatentMethod::Split || method == LatentMethod::Key; }
    bool compressesValues() const { return method == LatentMethod::Joint || method == LatentMethod::Split || method == LatentMethod::Value; }
    // Width of the latent(s) cached per token.
    std::int64_t latentWidth() const;
    // Cached elements per token: RoPE keys + latent(s) + whatever stays uncompressed.
    std::int64_t cacheElements(std::int64_t kvHeads, std::int64_t headDim) const;

    bool operator==(const MlaLayerConfig&) const = default;
};

// Provenance and settings recorded with a converted model (config.json "mha2mla" block).
struct MlaConfig {
    std::vector<MlaLayerConfig> layers;
    std::string partialRopeVersion = "2-norm"; // high, low, uniform, 2-norm, or custom
    int uniformStartPoint = 0;                 // in pairs
    std::string sigmaPlacement = "up";         // up (public code) or sqrt (paper)
    bool activationAware = false;
    std::string preset;                        // paper, best, or empty
    std::string toolVersion;
};

} // namespace mla
