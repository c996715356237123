#include "formats/ggml_quants.h"

#include "util/half.h"

#include <cstring>

// Every value is computed as the format defines it, with one rounding per operation; a fused multiply-add would
// round once where the definition rounds twice and give a different float.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace mla {
namespace {

float half(const std::uint8_t* p)
{
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return f16ToFloat(h);
}

// Block layouts (byte offsets) as ggml declares the structs: no padding, little-endian halves.

// Q8_0: d, qs[32] (int8). value = q * d.
void dequantizeQ8_0(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const auto* qs = reinterpret_cast<const std::int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j)
        y[j] = static_cast<float>(qs[j]) * d;
}

// Q4_0: d, qs[16]; value j from the low nibble of qs[j], value j + 16 from its high nibble, minus 8, times d.
void dequantizeQ4_0(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const std::uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
}

// Q4_1: d, m, qs[16]; value = q * d + m.
void dequantizeQ4_1(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const float m = half(b + 2);
    const std::uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
        y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
}

// Q5_0: d, qh (32 fifth bits, little-endian), qs[16]; value = (q - 16) * d.
void dequantizeQ5_0(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    std::uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const std::uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const int high0 = static_cast<int>((qh >> j) & 1u) << 4;
        const int high1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
        y[j] = static_cast<float>(((qs[j] & 0x0F) | high0) - 16) * d;
        y[j + 16] = static_cast<float>(((qs[j] >> 4) | high1) - 16) * d;
    }
}

// Q5_1: d, m, qh, qs[16]; value = q * d + m.
void dequantizeQ5_1(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const float m = half(b + 2);
    std::uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const std::uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const int high0 = static_cast<int>((qh >> j) & 1u) << 4;
        const int high1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
        y[j] = static_cast<float>((qs[j] & 0x0F) | high0) * d + m;
        y[j + 16] = static_cast<float>((qs[j] >> 4) | high1) * d + m;
    }
}

// Q2_K (256 values): scales[16] (low nibble: scale, high nibble: min, of 16 values each), qs[64] (2-bit codes), d,
// dmin. In each half of 128 values, qs[0..31] hold 4 bit planes: shift 0, 2, 4, 6 give values 0..31, 32..63, ... of
// that half; qs[l] and qs[l + 16] split each 32 into two sub-blocks of 16. value = d*scale * q - dmin*min.
void dequantizeQ2_K(const std::uint8_t* b, float* y)
{
    const std::uint8_t* scales = b;
    const std::uint8_t* q = b + 16;
    const float d = half(b + 80);
    const float dmin = half(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half16 = 0; half16 < 2; ++half16) {
                const std::uint8_t sc = scales[is++];
                const float dl = d * static_cast<float>(sc & 0xF);
                const float ml = dmin * static_cast<float>(sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * static_cast<float>((q[l + 16 * half16] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

// The 16 signed 6-bit scales of a Q3_K block: low 4 bits in bytes 0..7 (low nibble for scales 0..7, high nibble
// for 8..15), top 2 bits in bytes 8..11 (scale j at byte 8 + j % 4, bits 2 * (j / 4)); stored with a +32 offset.
int q3kScale(const std::uint8_t* s, int j)
{
    const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}

// Q3_K (256 values): hmask[32] (third bits), qs[64] (low 2 bits, planes as Q2_K), scales[12], d. A code is
// (low 2 bits) - 4 unless its hmask bit is set. Value = d*scale * code.
void dequantizeQ3_K(const std::uint8_t* b, float* y)
{
    const std::uint8_t* hm = b;
    const std::uint8_t* q = b + 32;
    const std::uint8_t* scales = b + 96;
    const float d = half(b + 108);
    int is = 0;
    std::uint8_t mask = 1;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half16 = 0; half16 < 2; ++half16) {
                const float dl = d * static_cast<float>(q3kScale(scales, is++));
                for (int l = 0; l < 16; ++l) {
                    const int i = l + 16 * half16;
                    const int code = ((q[i] >> shift) & 3) - ((hm[i] & mask) ? 0 : 4);
                    *y++ = dl * static_cast<float>(code);
                }
            }
            mask = static_cast<std::uint8_t>(mask << 1);
        }
        q += 32;
    }
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's 12 packed bytes.
void k4ScaleMin(const std::uint8_t* s, int j, int& scale, int& min)
{
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K (256 values): d, dmin, scales[12] (8 sub-blocks of 32), qs[128]: in each 64 values, qs[l] low nibble is value
// l, high nibble value l + 32. Value = d*scale * q - dmin*min.
void dequantizeQ4_K(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const float dmin = half(b + 2);
    const std::uint8_t* scales = b + 4;
    const std::uint8_t* q = b + 16;
    for (int j = 0; j < 8; j += 2) {
        int sc, m;
        k4ScaleMin(scales, j, sc, m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(m);
        k4ScaleMin(scales, j + 1, sc, m);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        q += 32;
    }
}

// Q5_K: as Q4_K plus qh[32], whose bits 2k and 2k+1 are the fifth bits of the k-th 64 values' two halves.
void dequantizeQ5_K(const std::uint8_t* b, float* y)
{
    const float d = half(b);
    const float dmin = half(b + 2);
    const std::uint8_t* scales = b + 4;
    const std::uint8_t* qh = b + 16;
    const std::uint8_t* ql = b + 48;
    std::uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2) {
        int sc, m;
        k4ScaleMin(scales, j, sc, m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(m);
        k4ScaleMin(scales, j + 1, sc, m);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 = static_cast<std::uint8_t>(u1 << 2);
        u2 = static_cast<std::uint8_t>(u2 << 2);
    }
}

// Q6_K (256 values): ql[128] (low 4 bits), qh[64] (top 2 bits), scales[16] (int8, one per 16 values), d. Value =
// (d * scale) * (code - 32): the product of d and the scale is rounded first, as the format computes it.
void dequantizeQ6_K(const std::uint8_t* b, float* y)
{
    const std::uint8_t* ql = b;
    const std::uint8_t* qh = b + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
    const float d = half(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

constexpr GgmlBlockType kBlockTypes[] = {
    {2, "Q4_0", 32, 18, dequantizeQ4_0},
    {3, "Q4_1", 32, 20, dequantizeQ4_1},
    {6, "Q5_0", 32, 22, dequantizeQ5_0},
    {7, "Q5_1", 32, 24, dequantizeQ5_1},
    {8, "Q8_0", 32, 34, dequantizeQ8_0},
    {10, "Q2_K", 256, 84, dequantizeQ2_K},
    {11, "Q3_K", 256, 110, dequantizeQ3_K},
    {12, "Q4_K", 256, 144, dequantizeQ4_K},
    {13, "Q5_K", 256, 176, dequantizeQ5_K},
    {14, "Q6_K", 256, 210, dequantizeQ6_K},
};

struct FileTypeName {
    std::int64_t id;
    const char* name;
};

// llama.cpp's llama_ftype (general.file_type): what the quantiser was asked for, e.g. Q4_K_M mixes Q4_K and Q6_K.
constexpr FileTypeName kFileTypes[] = {
    {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"}, {8, "Q5_0"}, {9, "Q5_1"}, {10, "Q2_K"},
    {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
    {18, "Q6_K"}, {21, "Q2_K_S"}, {32, "BF16"},
};

} // namespace

const GgmlBlockType* ggmlBlockType(std::uint32_t id)
{
    for (const auto& t : kBlockTypes) {
        if (t.id == id)
            return &t;
    }
    return nullptr;
}

void dequantizeGgml(const GgmlBlockType& type, const std::uint8_t* blocks, float* out, std::size_t values)
{
    const std::size_t count = values / type.blockValues;
#pragma omp parallel for schedule(static) if (count > 4096)
    for (std::size_t i = 0; i < count; ++i)
        type.dequantize(blocks + i * type.blockBytes, out + i * type.blockValues);
}

std::optional<std::string> ggufFileTypeName(std::int64_t fileType)
{
    for (const auto& f : kFileTypes) {
        if (f.id == fileType)
            return std::string(f.name);
    }
    return std::nullopt;
}

} // namespace mla
