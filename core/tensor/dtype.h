#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mla {

// Element types of weights we can compute with. Everything is computed in float32; F16 and BF16 are converted on
// the fly in the kernels so that large checkpoints stay memory-mapped in their own dtype.
enum class DType : std::uint8_t { F32, F16, BF16 };

struct DTypeInfo {
    DType dtype;
    std::string_view name; // as safetensors spells it
    std::size_t bytes;
};

inline constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
};

constexpr const DTypeInfo& dtypeInfo(DType t)
{
    return kDTypes[static_cast<int>(t)];
}
constexpr std::size_t dtypeSize(DType t) { return dtypeInfo(t).bytes; }
constexpr std::string_view dtypeName(DType t) { return dtypeInfo(t).name; }

inline std::optional<DType> dtypeFromName(std::string_view name)
{
    for (const auto& info : kDTypes) {
        if (info.name == name)
            return info.dtype;
    }
    return std::nullopt;
}

// Accepts the command-line spellings f32 / f16 / bf16 too.
std::optional<DType> dtypeFromUserName(std::string_view name);

} // namespace mla
