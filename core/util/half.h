#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace mla {

// IEEE binary16 and bfloat16 conversions. Weights are stored in these formats and computed in float32.

inline float bf16ToFloat(std::uint16_t h)
{
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline std::uint16_t floatToBf16(float f)
{
    std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>(u >> 16);
}

inline float f16ToFloat(std::uint16_t h)
{
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else { // subnormal: normalise
            exponent = 127 - 15 + 1;
            while ((mantissa & 0x400u) == 0) {
                mantissa <<= 1;
                --exponent;
            }
            mantissa &= 0x3ffu;
            bits = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    return std::bit_cast<float>(bits);
}

// Round to nearest even with overflow to infinity and gradual underflow.
inline std::uint16_t floatToF16(float f)
{
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t absBits = u & 0x7fffffffu;
    if (absBits > 0x7f800000u)
        return static_cast<std::uint16_t>(sign | 0x7e00u);
    if (absBits >= 0x477ff000u) // rounds to >= 65520: infinity
        return static_cast<std::uint16_t>(sign | 0x7c00u);
    if (absBits < 0x38800000u) { // below the smallest normal half: subnormal or zero
        const float magnitude = std::bit_cast<float>(absBits);
        // Adding 0.5 moves the value's bits so that the float adder does the rounding to a multiple of 2^-24.
        const float shifted = magnitude + 0.5f;
        return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(shifted) - 0x3f000000u));
    }
    std::uint32_t rounded = absBits + 0xfffu + ((absBits >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
}

} // namespace mla
