#include "engine/kv_codec.h"

#include "tensor/kernels.h"
#include "util/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mla {
namespace {

constexpr float kF16Max = 65504.0f;

float sanitised(float v)
{
    if (!(v == v))
        return 0.0f;
    return std::clamp(v, -kF16Max, kF16Max);
}

void storeF16(std::uint8_t* p, std::uint16_t h)
{
    p[0] = static_cast<std::uint8_t>(h & 0xffu);
    p[1] = static_cast<std::uint8_t>(h >> 8);
}

std::uint16_t loadF16(const std::uint8_t* p)
{
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

// Code of one element: clamp(rint(v), lo, hi), written so that no float outside [lo, hi] reaches the conversion.
int code(float v, int lo, int hi)
{
    const float r = std::nearbyint(v);
    if (!(r > static_cast<float>(lo)))
        return lo;
    if (r >= static_cast<float>(hi))
        return hi;
    return static_cast<int>(r);
}

void putNibble(std::uint8_t* data, std::int64_t i, int nibble)
{
    std::uint8_t& b = data[i / 2];
    if (i % 2 == 0)
        b = static_cast<std::uint8_t>((b & 0xf0u) | static_cast<unsigned>(nibble));
    else
        b = static_cast<std::uint8_t>((b & 0x0fu) | (static_cast<unsigned>(nibble) << 4));
}

// Group parameters and codes of elements [first, first + n) of a row.
void encodeGroup(const float* x, std::int64_t first, std::int64_t n, CacheFormat type, std::uint8_t* data, std::uint8_t* params)
{
    const int levels = cacheFormatLevels(type);
    float lo = sanitised(x[first]), hi = lo;
    for (std::int64_t i = first; i < first + n; ++i) {
        const float v = sanitised(x[i]);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    const std::uint16_t minimumBits = f16AtMost(lo);
    const float minimum = f16ToFloat(minimumBits);
    const std::uint16_t scaleBits = f16AtLeast((hi - minimum) / static_cast<float>(levels));
    const float scale = f16ToFloat(scaleBits);
    storeF16(params, scaleBits);
    storeF16(params + 2, minimumBits);
    for (std::int64_t i = first; i < first + n; ++i) {
        const int q = scale > 0.0f ? code((sanitised(x[i]) - minimum) / scale, 0, levels) : 0;
        if (type == CacheFormat::Int8)
            data[i] = static_cast<std::uint8_t>(q);
        else
            putNibble(data, i, q);
    }
}

// --- generic decoders

void int4Generic(const std::uint8_t* data, std::int64_t first, std::int64_t n, float scale, float offset, float* out)
{
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t e = first + i;
        const int nibble = (e % 2 == 0) ? (data[e / 2] & 0x0f) : (data[e / 2] >> 4);
        out[i] = offset + scale * static_cast<float>(nibble);
    }
}

void int8Generic(const std::uint8_t* data, std::int64_t n, float scale, float offset, float* out)
{
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = offset + scale * static_cast<float>(data[i]);
}

void bf16Generic(const std::uint8_t* data, std::int64_t n, float* out)
{
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = bf16ToFloat(static_cast<std::uint16_t>(data[2 * i] | (data[2 * i + 1] << 8)));
}

} // namespace

namespace detail {

const KvCodecKernels& genericKvCodec()
{
    static const KvCodecKernels k{int4Generic, int8Generic, bf16Generic};
    return k;
}

const KvCodecKernels& activeKvCodec()
{
    static const KvCodecKernels* k = [] {
        const KvCodecKernels* avx2 = avx2KvCodec();
        // The tensor kernels have checked the CPU for AVX2, FMA and F16C.
        if (avx2 && &activeKernels() != &genericKernels())
            return avx2;
        return &genericKvCodec();
    }();
    return *k;
}

} // namespace detail

std::uint16_t f16AtMost(float v)
{
    v = sanitised(v);
    std::uint16_t h = floatToF16(v);
    if (f16ToFloat(h) > v) {
        // One step towards -infinity: down in magnitude for a positive value, up for a negative one (or -0).
        if ((h & 0x7fffu) == 0)
            h = 0x8001u;
        else if (h & 0x8000u)
            ++h;
        else
            --h;
    }
    return h;
}

std::uint16_t f16AtLeast(float v)
{
    v = sanitised(v);
    std::uint16_t h = floatToF16(v);
    if (f16ToFloat(h) < v) {
        if ((h & 0x7fffu) == 0)
            h = 0x0001u;
        else if (h & 0x8000u)
            --h;
        else
            ++h;
    }
    return h;
}

void encodeCacheRow(const float* x, std::int64_t width, const CachePartFormat& format, std::uint8_t* out)
{
    switch (format.type) {
    case CacheFormat::F32:
        std::memcpy(out, x, static_cast<std::size_t>(width) * sizeof(float));
        return;
    case CacheFormat::BF16:
        for (std::int64_t i = 0; i < width; ++i)
            storeF16(out + 2 * i, floatToBf16(x[i]));
        return;
    case CacheFormat::Int8:
    case CacheFormat::Int4:
        break;
    }
    const std::int64_t g = format.groupWidth(width);
    std::uint8_t* params = out + format.dataBytes(width);
    if (format.type == CacheFormat::Int4 && width % 2 != 0)
        out[width / 2] = 0; // the unused high nibble of the last byte stays 0, so equal rows are equal bytes
    for (std::int64_t first = 0, k = 0; first < width; first += g, ++k)
        encodeGroup(x, first, std::min(g, width - first), format.type, out, params + k * static_cast<std::int64_t>(format.paramBytes()));
}

void decodeCacheRows(const std::uint8_t* src, std::int64_t count, std::int64_t width, const CachePartFormat& format, float* dst,
                     std::int64_t dstStride)
{
    const std::size_t rowBytes = format.rowBytes(width);
    const detail::KvCodecKernels& k = detail::activeKvCodec();
    for (std::int64_t r = 0; r < count; ++r) {
        const std::uint8_t* row = src + static_cast<std::size_t>(r) * rowBytes;
        float* out = dst + r * dstStride;
        switch (format.type) {
        case CacheFormat::F32:
            std::memcpy(out, row, static_cast<std::size_t>(width) * sizeof(float));
            continue;
        case CacheFormat::BF16:
            k.bf16(row, width, out);
            continue;
        case CacheFormat::Int8:
        case CacheFormat::Int4:
            break;
        }
        const std::int64_t g = format.groupWidth(width);
        const std::uint8_t* params = row + format.dataBytes(width);
        for (std::int64_t first = 0; first < width; first += g, params += format.paramBytes()) {
            const std::int64_t n = std::min(g, width - first);
            const float scale = f16ToFloat(loadF16(params));
            const float minimum = f16ToFloat(loadF16(params + 2));
            if (format.type == CacheFormat::Int8)
                k.int8(row + first, n, scale, minimum, out + first);
            else
                k.int4(row, first, n, scale, minimum, out + first);
        }
    }
}

} // namespace mla
