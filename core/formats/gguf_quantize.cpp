#include "formats/gguf_quantize.h"

#include "tensor/tensor.h"
#include "util/error.h"
#include "util/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mla {
namespace {

constexpr std::int64_t kBlock = 32;

constexpr GgmlTypeTraits kTypes[] = {
    {GgmlType::F32, "F32", "f32", 1, 4, 0},
    {GgmlType::F16, "F16", "f16", 1, 2, 1},
    {GgmlType::BF16, "BF16", "bf16", 1, 2, 32},
    {GgmlType::Q8_0, "Q8_0", "q8_0", 32, 34, 7},
    {GgmlType::Q4_0, "Q4_0", "q4_0", 32, 18, 2},
};

void storeHalf(std::uint8_t* out, float d)
{
    const std::uint16_t h = floatToF16(d);
    std::memcpy(out, &h, 2);
}

// A non-finite weight has no quantised value (ggml's cast of NaN to int8 is undefined).
void requireFinite(const float* x, std::int64_t n)
{
    for (std::int64_t j = 0; j < n; ++j) {
        if (!std::isfinite(x[j]))
            throw Error("cannot quantise a non-finite weight (" + std::to_string(x[j]) + ")");
    }
}

float loadHalf(const std::uint8_t* in)
{
    std::uint16_t h;
    std::memcpy(&h, in, 2);
    return f16ToFloat(h);
}

} // namespace

const GgmlTypeTraits& ggmlTypeTraits(GgmlType type)
{
    for (const auto& t : kTypes) {
        if (t.type == type)
            return t;
    }
    throw Error("internal: ggml type " + std::to_string(static_cast<std::uint32_t>(type)) + " is not written");
}

std::optional<GgmlType> ggmlTypeFromUserName(std::string_view name)
{
    for (const auto& t : kTypes) {
        if (t.userName == name || t.name == name)
            return t.type;
    }
    return std::nullopt;
}

std::string_view ggmlTypeUserNames()
{
    return "f32, f16, bf16, q8_0 or q4_0";
}

bool ggmlRowFits(GgmlType type, std::int64_t n)
{
    return n > 0 && n % ggmlTypeTraits(type).blockSize == 0;
}

std::uint64_t ggmlRowBytes(GgmlType type, std::int64_t n)
{
    const auto& t = ggmlTypeTraits(type);
    if (!ggmlRowFits(type, n))
        throw Error("internal: a row of " + std::to_string(n) + " weights is not whole " + std::string(t.name) + " blocks");
    return static_cast<std::uint64_t>(n) / t.blockSize * t.blockBytes;
}

void quantizeRowQ8_0(const float* x, std::uint8_t* out, std::int64_t n)
{
    requireFinite(x, n);
    for (std::int64_t b = 0; b < n / kBlock; ++b, x += kBlock, out += 34) {
        float amax = 0.0f;
        for (std::int64_t j = 0; j < kBlock; ++j)
            amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        storeHalf(out, d);
        for (std::int64_t j = 0; j < kBlock; ++j)
            out[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[j] * id)));
    }
}

void quantizeRowQ4_0(const float* x, std::uint8_t* out, std::int64_t n)
{
    requireFinite(x, n);
    for (std::int64_t b = 0; b < n / kBlock; ++b, x += kBlock, out += 18) {
        float amax = 0.0f;
        float max = 0.0f;
        for (std::int64_t j = 0; j < kBlock; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        storeHalf(out, d);
        for (std::int64_t j = 0; j < kBlock / 2; ++j) {
            // ggml truncates toward zero through int8_t; x/d + 8.5 lies in [0.5, 16.5] for finite weights.
            const auto q0 = static_cast<std::uint8_t>(std::min<int>(15, static_cast<std::int8_t>(x[j] * id + 8.5f)));
            const auto q1 = static_cast<std::uint8_t>(std::min<int>(15, static_cast<std::int8_t>(x[j + kBlock / 2] * id + 8.5f)));
            out[2 + j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
    }
}

void dequantizeRowQ8_0(const std::uint8_t* in, float* y, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / kBlock; ++b, in += 34, y += kBlock) {
        const float d = loadHalf(in);
        for (std::int64_t j = 0; j < kBlock; ++j)
            y[j] = d * static_cast<float>(static_cast<std::int8_t>(in[2 + j]));
    }
}

void dequantizeRowQ4_0(const std::uint8_t* in, float* y, std::int64_t n)
{
    for (std::int64_t b = 0; b < n / kBlock; ++b, in += 18, y += kBlock) {
        const float d = loadHalf(in);
        for (std::int64_t j = 0; j < kBlock / 2; ++j) {
            y[j] = d * static_cast<float>((in[2 + j] & 0x0f) - 8);
            y[j + kBlock / 2] = d * static_cast<float>((in[2 + j] >> 4) - 8);
        }
    }
}

void encodeGgmlRow(GgmlType type, const float* x, std::uint8_t* out, std::int64_t n)
{
    ggmlRowBytes(type, n); // checks that the row is whole blocks
    switch (type) {
    case GgmlType::F32: std::memcpy(out, x, static_cast<std::size_t>(n) * 4); return;
    case GgmlType::F16: convertFromFloat(DType::F16, x, out, static_cast<std::size_t>(n)); return;
    case GgmlType::BF16: convertFromFloat(DType::BF16, x, out, static_cast<std::size_t>(n)); return;
    case GgmlType::Q8_0: quantizeRowQ8_0(x, out, n); return;
    case GgmlType::Q4_0: quantizeRowQ4_0(x, out, n); return;
    }
}

void decodeGgmlRow(GgmlType type, const std::uint8_t* in, float* y, std::int64_t n)
{
    ggmlRowBytes(type, n);
    switch (type) {
    case GgmlType::F32: std::memcpy(y, in, static_cast<std::size_t>(n) * 4); return;
    case GgmlType::F16: convertToFloat(DType::F16, in, y, static_cast<std::size_t>(n)); return;
    case GgmlType::BF16: convertToFloat(DType::BF16, in, y, static_cast<std::size_t>(n)); return;
    case GgmlType::Q8_0: dequantizeRowQ8_0(in, y, n); return;
    case GgmlType::Q4_0: dequantizeRowQ4_0(in, y, n); return;
    }
}

} // namespace mla
