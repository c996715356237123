// GGUF block quantisation (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K), checked against a reference written here
// from the published block layouts, independently of core's loops:
//  - every value of random blocks (random codes, random finite scales) dequantises bit-exactly to the reference's
//    per-value formula (code, scale and min located by index arithmetic instead of ggml's loop structure);
//  - a reference quantiser (scales rounded up so nothing clips) round-trips random weights: core's dequantised values
//    equal the reference's and lie within half a quantisation step of the originals;
//  - a GGUF model whose weights are stored quantised loads, reports its quantisation, and gives exactly the logits
//    of the same model stored with the dequantised weights as F32.
#include "common/test_support.h"

#include "engine/transformer.h"
#include "formats/ggml_quants.h"
#include "formats/gguf.h"
#include "model/model_loader.h"
#include "util/error.h"
#include "util/half.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

// ------------------------------------------------------------------------------------------ reference layouts

struct Layout {
    std::uint32_t id;
    const char* name;
    int values;
    int bytes;
};

constexpr Layout kLayouts[] = {
    {8, "Q8_0", 32, 34},   {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},   {6, "Q5_0", 32, 22},   {7, "Q5_1", 32, 24},
    {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210},
};

float h(const std::uint8_t* p)
{
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return f16ToFloat(v);
}

void setH(std::uint8_t* p, std::uint16_t v)
{
    std::memcpy(p, &v, 2);
}

// The smallest half not below v >= 0, so that a scale never shrinks the range it must cover.
std::uint16_t halfUp(float v)
{
    std::uint16_t x = floatToF16(v);
    if (f16ToFloat(x) < v)
        ++x;
    return x;
}

// The largest half not above v (for a min that must stay at or below the data).
std::uint16_t halfDown(float v)
{
    std::uint16_t x = floatToF16(v);
    if (f16ToFloat(x) > v)
        x = v >= 0 ? static_cast<std::uint16_t>(x - 1) : static_cast<std::uint16_t>(x + 1);
    return x;
}

int bit(const std::uint8_t* bytes, int index)
{
    return (bytes[index / 8] >> (index % 8)) & 1;
}

// The 6-bit scale and min of sub-block j of the 12 packed bytes of Q4_K/Q5_K, from ggml's packing rule: scales and
// mins 0..3 sit in the low 6 bits of bytes 0..3 and 4..7; those of 4..7 keep their low 4 bits in the nibbles of
// bytes 8..11 and their top 2 bits in the top bits of bytes 0..3 (scales) and 4..7 (mins).
std::pair<int, int> k4Packed(const std::uint8_t* s, int j)
{
    if (j < 4)
        return {s[j] & 0x3F, s[4 + j] & 0x3F};
    const int k = j - 4;
    const int scale = (s[8 + k] & 0x0F) | ((s[k] >> 6) << 4);
    const int min = (s[8 + k] >> 4) | ((s[4 + k] >> 6) << 4);
    return {scale, min};
}

void k4Pack(std::uint8_t* s, int j, int scale, int min)
{
    if (j < 4) {
        s[j] = static_cast<std::uint8_t>((s[j] & 0xC0) | scale);
        s[4 + j] = static_cast<std::uint8_t>((s[4 + j] & 0xC0) | min);
        return;
    }
    const int k = j - 4;
    s[8 + k] = static_cast<std::uint8_t>((scale & 0x0F) | ((min & 0x0F) << 4));
    s[k] = static_cast<std::uint8_t>((s[k] & 0x3F) | ((scale >> 4) << 6));
    s[4 + k] = static_cast<std::uint8_t>((s[4 + k] & 0x3F) | ((min >> 4) << 6));
}

// Q3_K's 16 scales, unpacked the way ggml's dequantiser does it: the 12 bytes as three 32-bit words, rearranged
// with masks into 16 bytes of 6-bit values (a different route from the per-scale rule core uses).
std::array<int, 16> q3kScales(const std::uint8_t* s)
{
    std::uint32_t aux[4];
    std::memcpy(aux, s, 12);
    const std::uint32_t tmp = aux[2];
    const std::uint32_t m1 = 0x03030303u, m2 = 0x0f0f0f0fu;
    aux[2] = ((aux[0] >> 4) & m2) | (((tmp >> 4) & m1) << 4);
    aux[3] = ((aux[1] >> 4) & m2) | (((tmp >> 6) & m1) << 4);
    aux[0] = (aux[0] & m2) | (((tmp >> 0) & m1) << 4);
    aux[1] = (aux[1] & m2) | (((tmp >> 2) & m1) << 4);
    std::array<int, 16> out{};
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(aux);
    for (int j = 0; j < 16; ++j)
        out[static_cast<std::size_t>(j)] = bytes[j] - 32;
    return out;
}

void q3kSetScale(std::uint8_t* s, int j, int value) // value in [-32, 31]
{
    const int l = value + 32;
    if (j < 8)
        s[j] = static_cast<std::uint8_t>((s[j] & 0xF0) | (l & 0xF));
    else
        s[j - 8] = static_cast<std::uint8_t>((s[j - 8] & 0x0F) | ((l & 0xF) << 4));
    const int shift = 2 * (j / 4);
    s[8 + j % 4] = static_cast<std::uint8_t>((s[8 + j % 4] & ~(3 << shift)) | ((l >> 4) << shift));
}

// Value i of a block, computed from the format's definition with the value's own code, scale and min found by index
// arithmetic. Operation order and roundings are the format's: (d * scale) * code - (dmin * min).
float referenceValue(std::uint32_t type, const std::uint8_t* b, int i)
{
    switch (type) {
    case 8: // Q8_0
        return static_cast<float>(static_cast<std::int8_t>(b[2 + i])) * h(b);
    case 2: case 3: { // Q4_0, Q4_1: value i is nibble (i / 16) of byte i % 16
        const std::uint8_t* qs = b + (type == 2 ? 2 : 4);
        const int q = (qs[i % 16] >> (4 * (i / 16))) & 0xF;
        return type == 2 ? static_cast<float>(q - 8) * h(b) : static_cast<float>(q) * h(b) + h(b + 2);
    }
    case 6: case 7: { // Q5_0, Q5_1: bit i of the 32-bit qh is the fifth bit
        const std::uint8_t* qh = b + (type == 6 ? 2 : 4);
        const std::uint8_t* qs = qh + 4;
        const int q = ((qs[i % 16] >> (4 * (i / 16))) & 0xF) | (bit(qh, i) << 4);
        return type == 6 ? static_cast<float>(q - 16) * h(b) : static_cast<float>(q) * h(b) + h(b + 2);
    }
    case 10: { // Q2_K: group i / 16; 2-bit plane (i % 128) / 32 of byte 32 * (i / 128) + i % 32
        const int half128 = i / 128, r = i % 128;
        const int code = (b[16 + 32 * half128 + r % 32] >> (2 * (r / 32))) & 3;
        const std::uint8_t sc = b[i / 16];
        const float dl = h(b + 80) * static_cast<float>(sc & 0xF);
        const float ml = h(b + 82) * static_cast<float>(sc >> 4);
        return dl * static_cast<float>(code) - ml;
    }
    case 11: { // Q3_K: as Q2_K for the low bits, high bit in hmask byte i % 32, bit 4 * (i / 128) + (i % 128) / 32
        const int half128 = i / 128, r = i % 128;
        const int low = (b[32 + 32 * half128 + r % 32] >> (2 * (r / 32))) & 3;
        const int high = (b[r % 32] >> (4 * half128 + r / 32)) & 1;
        const int code = low - (high ? 0 : 4);
        const float dl = h(b + 108) * static_cast<float>(q3kScales(b + 96)[static_cast<std::size_t>(i / 16)]);
        return dl * static_cast<float>(code);
    }
    case 12: case 13: { // Q4_K, Q5_K: sub-block i / 32; nibble (i % 64) / 32 of byte 32 * (i / 64) + i % 32
        const int chunk = i / 64, r = i % 64;
        const std::uint8_t* qs = b + (type == 12 ? 16 : 48);
        int q = (qs[32 * chunk + r % 32] >> (4 * (r / 32))) & 0xF;
        if (type == 13)
            q += 16 * ((b[16 + r % 32] >> (2 * chunk + r / 32)) & 1);
        const auto [scale, min] = k4Packed(b + 4, i / 32);
        const float dl = h(b) * static_cast<float>(scale);
        const float ml = h(b + 2) * static_cast<float>(min);
        return dl * static_cast<float>(q) - ml;
    }
    case 14: { // Q6_K: quarter p = (i % 128) / 32 takes nibble p / 2 of ql byte 64 * (i / 128) + 32 * (p % 2) + i % 32
        const int half128 = i / 128, r = i % 128, p = r / 32, l = r % 32;
        const int low = (b[64 * half128 + 32 * (p % 2) + l] >> (4 * (p / 2))) & 0xF;
        const int high = (b[128 + 32 * half128 + l] >> (2 * p)) & 3;
        const int code = (low | (high << 4)) - 32;
        const float d = h(b + 208) * static_cast<float>(static_cast<std::int8_t>(b[192 + i / 16]));
        return d * static_cast<float>(code);
    }
    default:
        return NAN;
    }
}

// ------------------------------------------------------------------------------------------ reference quantiser

int nearest(float x)
{
    return static_cast<int>(std::lround(x));
}

// Quantises one block of `x`; fills `step` with the quantisation step of every value (its error bound is half of it).
void quantizeBlock(std::uint32_t type, const float* x, std::uint8_t* b, float* step)
{
    const Layout& L = *std::find_if(std::begin(kLayouts), std::end(kLayouts), [&](const Layout& l) { return l.id == type; });
    std::memset(b, 0, static_cast<std::size_t>(L.bytes));
    auto amaxOf = [&](int from, int n) {
        float a = 0;
        for (int i = from; i < from + n; ++i)
            a = std::max(a, std::fabs(x[i]));
        return a;
    };
    auto minMax = [&](int from, int n) {
        float lo = x[from], hi = x[from];
        for (int i = from; i < from + n; ++i) {
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
        }
        return std::pair{lo, hi};
    };
    switch (type) {
    case 8: case 2: case 6: { // symmetric: q in [-levels, levels]
        const int levels = type == 8 ? 127 : type == 2 ? 7 : 15;
        setH(b, halfUp(amaxOf(0, 32) / static_cast<float>(levels)));
        const float d = h(b);
        std::uint32_t qh = 0;
        for (int i = 0; i < 32; ++i) {
            const int q = d > 0 ? std::clamp(nearest(x[i] / d), -levels, levels) : 0;
            step[i] = d;
            if (type == 8) {
                b[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
            } else {
                const int stored = q + (type == 2 ? 8 : 16);
                std::uint8_t* qs = b + (type == 2 ? 2 : 6);
                qs[i % 16] |= static_cast<std::uint8_t>((stored & 0xF) << (4 * (i / 16)));
                qh |= static_cast<std::uint32_t>(stored >> 4) << i;
            }
        }
        if (type == 6)
            std::memcpy(b + 2, &qh, 4);
        return;
    }
    case 3: case 7: { // with a min: q in [0, levels]
        const int levels = type == 3 ? 15 : 31;
        const auto [lo, hi] = minMax(0, 32);
        setH(b + 2, halfDown(lo));
        const float m = h(b + 2);
        setH(b, halfUp((hi - m) / static_cast<float>(levels)));
        const float d = h(b);
        std::uint32_t qh = 0;
        std::uint8_t* qs = b + (type == 3 ? 4 : 8);
        for (int i = 0; i < 32; ++i) {
            const int q = d > 0 ? std::clamp(nearest((x[i] - m) / d), 0, levels) : 0;
            step[i] = d;
            qs[i % 16] |= static_cast<std::uint8_t>((q & 0xF) << (4 * (i / 16)));
            qh |= static_cast<std::uint32_t>(q >> 4) << i;
        }
        if (type == 7)
            std::memcpy(b + 4, &qh, 4);
        return;
    }
    case 10: case 12: case 13: { // k-quants with a min: groups of 16 (Q2_K) or 32 values
        const int group = type == 10 ? 16 : 32;
        const int groups = 256 / group;
        const int levels = type == 10 ? 3 : type == 12 ? 15 : 31;
        const int scaleLevels = type == 10 ? 15 : 63;
        const int dOffset = type == 10 ? 80 : 0, mOffset = type == 10 ? 82 : 2;
        std::vector<float> shift(static_cast<std::size_t>(groups)), top(static_cast<std::size_t>(groups));
        float maxShift = 0;
        for (int g = 0; g < groups; ++g) {
            const auto [lo, hi] = minMax(g * group, group);
            shift[static_cast<std::size_t>(g)] = std::max(0.0f, -lo);
            top[static_cast<std::size_t>(g)] = hi;
            maxShift = std::max(maxShift, shift[static_cast<std::size_t>(g)]);
        }
        setH(b + mOffset, halfUp(maxShift / static_cast<float>(scaleLevels)));
        const float dmin = h(b + mOffset);
        std::vector<int> mins(static_cast<std::size_t>(groups));
        std::vector<float> ml(static_cast<std::size_t>(groups));
        float maxRange = 0;
        for (int g = 0; g < groups; ++g) {
            const auto gi = static_cast<std::size_t>(g);
            mins[gi] = dmin > 0 ? std::min(scaleLevels, static_cast<int>(std::ceil(shift[gi] / dmin))) : 0;
            ml[gi] = dmin * static_cast<float>(mins[gi]);
            maxRange = std::max(maxRange, (std::max(top[gi], 0.0f) + ml[gi]) / static_cast<float>(levels));
        }
        setH(b + dOffset, halfUp(maxRange / static_cast<float>(scaleLevels)));
        const float d = h(b + dOffset);
        for (int g = 0; g < groups; ++g) {
            const auto gi = static_cast<std::size_t>(g);
            const float range = (std::max(top[gi], 0.0f) + ml[gi]) / static_cast<float>(levels);
            const int scale = d > 0 ? std::min(scaleLevels, static_cast<int>(std::ceil(range / d))) : 0;
            if (type == 10)
                b[g] = static_cast<std::uint8_t>(scale | (mins[gi] << 4));
            else
                k4Pack(b + 4, g, scale, mins[gi]);
            const float dl = d * static_cast<float>(scale);
            for (int i = g * group; i < (g + 1) * group; ++i) {
                const int q = dl > 0 ? std::clamp(nearest((x[i] + ml[gi]) / dl), 0, levels) : 0;
                step[i] = dl;
                if (type == 10) {
                    const int half128 = i / 128, r = i % 128;
                    b[16 + 32 * half128 + r % 32] |= static_cast<std::uint8_t>(q << (2 * (r / 32)));
                } else {
                    const int chunk = i / 64, r = i % 64;
                    std::uint8_t* qs = b + (type == 12 ? 16 : 48);
                    qs[32 * chunk + r % 32] |= static_cast<std::uint8_t>((q & 0xF) << (4 * (r / 32)));
                    if (type == 13)
                        b[16 + r % 32] |= static_cast<std::uint8_t>((q >> 4) << (2 * chunk + r / 32));
                }
            }
        }
        return;
    }
    case 11: case 14: { // symmetric k-quants, groups of 16: Q3_K codes in [-3, 3] (of [-4, 3]), Q6_K in [-31, 31]
        const int levels = type == 11 ? 3 : 31;
        const int scaleLevels = type == 11 ? 31 : 127;
        const int dOffset = type == 11 ? 108 : 208;
        float maxStep = 0;
        for (int g = 0; g < 16; ++g)
            maxStep = std::max(maxStep, amaxOf(g * 16, 16) / static_cast<float>(levels));
        setH(b + dOffset, halfUp(maxStep / static_cast<float>(scaleLevels)));
        const float d = h(b + dOffset);
        for (int g = 0; g < 16; ++g) {
            const float want = amaxOf(g * 16, 16) / static_cast<float>(levels);
            const int scale = d > 0 ? std::min(scaleLevels, static_cast<int>(std::ceil(want / d))) : 0;
            if (type == 11)
                q3kSetScale(b + 96, g, scale);
            else
                b[192 + g] = static_cast<std::uint8_t>(static_cast<std::int8_t>(scale));
            const float dl = d * static_cast<float>(scale);
            for (int i = g * 16; i < g * 16 + 16; ++i) {
                const int q = dl > 0 ? std::clamp(nearest(x[i] / dl), -levels, levels) : 0;
                step[i] = dl;
                const int half128 = i / 128, r = i % 128;
                if (type == 11) {
                    const int stored = q + 4; // 1..7: high bit set for q >= 0
                    b[32 + 32 * half128 + r % 32] |= static_cast<std::uint8_t>((stored & 3) << (2 * (r / 32)));
                    b[r % 32] |= static_cast<std::uint8_t>((stored >> 2) << (4 * half128 + r / 32));
                } else {
                    const int stored = q + 32, p = r / 32, l = r % 32;
                    b[64 * half128 + 32 * (p % 2) + l] |= static_cast<std::uint8_t>((stored & 0xF) << (4 * (p / 2)));
                    b[128 + 32 * half128 + l] |= static_cast<std::uint8_t>((stored >> 4) << (2 * p));
                }
            }
        }
        return;
    }
    default:
        QFAIL("no reference quantiser for this type");
    }
}

std::vector<float> randomWeights(std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(n);
    for (std::size_t i = 0; i < n; ++i) {
        // Blocks of very different magnitudes, one all-zero block, one positive-only and one negative-only block.
        const std::size_t block = i / 256;
        const float scale = std::pow(10.0f, static_cast<float>(static_cast<int>(block % 7) - 4));
        float v = normal(rng) * scale;
        if (block == 3)
            v = 0.0f;
        if (block == 4)
            v = std::fabs(v) + 0.5f * scale;
        if (block == 5)
            v = -std::fabs(v);
        x[i] = v;
    }
    return x;
}

// ------------------------------------------------------------------------------------------ a GGUF writer

using mla::test::put;

using mla::test::putString;

struct GgufTensor {
    std::string name;
    std::vector<std::uint64_t> dims; // ggml order
    std::uint32_t type;
    std::vector<std::uint8_t> data;
};

void writeGguf(const fs::path& path, const std::vector<std::pair<std::string, std::uint32_t>>& u32s, std::uint32_t fileType,
               const std::vector<GgufTensor>& tensors)
{
    std::vector<std::uint8_t> out{'G', 'G', 'U', 'F'};
    put<std::uint32_t>(out, 3);
    put<std::uint64_t>(out, tensors.size());
    put<std::uint64_t>(out, u32s.size() + 2);
    putString(out, "general.architecture");
    put<std::uint32_t>(out, 8);
    putString(out, "llama");
    putString(out, "general.file_type");
    put<std::uint32_t>(out, 4);
    put<std::uint32_t>(out, fileType);
    for (const auto& [key, value] : u32s) {
        putString(out, key);
        put<std::uint32_t>(out, 4);
        put<std::uint32_t>(out, value);
    }
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const auto& t : tensors) {
        putString(out, t.name);
        put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
        for (auto d : t.dims)
            put(out, d);
        put(out, t.type);
        put(out, offset);
        offsets.push_back(offset);
        offset = (offset + t.data.size() + 31) / 32 * 32;
    }
    while (out.size() % 32)
        out.push_back(0);
    const std::size_t start = out.size();
    out.resize(start + offset, 0);
    for (std::size_t i = 0; i < tensors.size(); ++i)
        std::memcpy(out.data() + start + offsets[i], tensors[i].data.data(), tensors[i].data.size());
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
}

} // namespace

class TestGgmlQuants : public QObject {
    Q_OBJECT

private slots:
    void tableMatchesLayouts();
    void randomBlocksAreBitExact_data();
    void randomBlocksAreBitExact();
    void referenceQuantiserRoundTrips_data();
    void referenceQuantiserRoundTrips();
    void quantisedGgufGivesTheLogitsOfItsDequantisedWeights_data();
    void quantisedGgufGivesTheLogitsOfItsDequantisedWeights();
    void unsupportedOrMisshapedQuantisationIsAClearError();
};

void TestGgmlQuants::tableMatchesLayouts()
{
    for (const Layout& l : kLayouts) {
        const GgmlBlockType* t = ggmlBlockType(l.id);
        QVERIFY2(t, l.name);
        QCOMPARE(std::string(t->name), std::string(l.name));
        QCOMPARE(static_cast<int>(t->blockValues), l.values);
        QCOMPARE(static_cast<int>(t->blockBytes), l.bytes);
    }
    for (std::uint32_t plain : {0u, 1u, 30u, 16u /* IQ2_XXS */})
        QVERIFY(ggmlBlockType(plain) == nullptr);
    QCOMPARE(*ggufFileTypeName(15), std::string("Q4_K_M"));
    QCOMPARE(*ggufFileTypeName(7), std::string("Q8_0"));
    QVERIFY(!ggufFileTypeName(9999));
}

void TestGgmlQuants::randomBlocksAreBitExact_data()
{
    QTest::addColumn<int>("type");
    for (const Layout& l : kLayouts)
        QTest::newRow(l.name) << static_cast<int>(l.id);
}

void TestGgmlQuants::randomBlocksAreBitExact()
{
    QFETCH(int, type);
    const GgmlBlockType& t = *ggmlBlockType(static_cast<std::uint32_t>(type));
    const Layout& L = *std::find_if(std::begin(kLayouts), std::end(kLayouts), [&](const Layout& l) { return l.id == t.id; });
    std::mt19937 rng(12345u + static_cast<unsigned>(type));
    const int blocks = 64;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(blocks * L.bytes));
    for (auto& b : bytes)
        b = static_cast<std::uint8_t>(rng());
    // Finite half scales (every code and scale pattern stays random): exponent field below 31.
    const std::vector<int> halves = type == 10 ? std::vector<int>{80, 82} : type == 11 ? std::vector<int>{108}
                                  : type == 14 ? std::vector<int>{208} : type == 12 || type == 13 ? std::vector<int>{0, 2}
                                  : type == 3 || type == 7 ? std::vector<int>{0, 2} : std::vector<int>{0};
    for (int k = 0; k < blocks; ++k) {
        for (int at : halves) {
            std::uint8_t* p = bytes.data() + k * L.bytes + at;
            p[1] = static_cast<std::uint8_t>((p[1] & 0x83) | ((rng() % 30) << 2));
        }
    }
    std::vector<float> out(static_cast<std::size_t>(blocks * L.values));
    dequantizeGgml(t, bytes.data(), out.data(), out.size());
    for (int k = 0; k < blocks; ++k) {
        for (int i = 0; i < L.values; ++i) {
            const float want = referenceValue(t.id, bytes.data() + k * L.bytes, i);
            const float got = out[static_cast<std::size_t>(k * L.values + i)];
            if (std::memcmp(&want, &got, 4) != 0)
                QFAIL(qPrintable(QStringLiteral("%1 block %2 value %3: %4, reference %5").arg(L.name).arg(k).arg(i).arg(got).arg(want)));
        }
    }
}

void TestGgmlQuants::referenceQuantiserRoundTrips_data()
{
    randomBlocksAreBitExact_data();
}

void TestGgmlQuants::referenceQuantiserRoundTrips()
{
    QFETCH(int, type);
    const GgmlBlockType& t = *ggmlBlockType(static_cast<std::uint32_t>(type));
    const std::size_t n = 256 * 12;
    const std::vector<float> x = randomWeights(n, 7u + static_cast<unsigned>(type));
    std::vector<std::uint8_t> blocks(n / t.blockValues * t.blockBytes);
    std::vector<float> step(n);
    for (std::size_t k = 0; k < n / t.blockValues; ++k)
        quantizeBlock(t.id, x.data() + k * t.blockValues, blocks.data() + k * t.blockBytes, step.data() + k * t.blockValues);
    std::vector<float> y(n);
    dequantizeGgml(t, blocks.data(), y.data(), n);
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const float want = referenceValue(t.id, blocks.data() + (i / t.blockValues) * t.blockBytes, static_cast<int>(i % t.blockValues));
        QVERIFY2(std::memcmp(&want, &y[i], 4) == 0, qPrintable(QStringLiteral("%1 value %2").arg(t.name).arg(i)));
        // Half a step, plus the rounding of the two float operations that form the value.
        const double bound = 0.5 * step[i] * (1.0 + 1e-6) + 4.0 * 1.2e-7 * (std::fabs(x[i]) + 2.0 * step[i]) + 1e-30;
        const double error = std::fabs(static_cast<double>(x[i]) - y[i]);
        if (!(error <= bound))
            QFAIL(qPrintable(QStringLiteral("%1 value %2: %3 became %4 (step %5)").arg(t.name).arg(i).arg(x[i]).arg(y[i]).arg(step[i])));
        if (step[i] > 0)
            worst = std::max(worst, error / step[i]);
    }
    QVERIFY2(worst > 0.3, "the test data should exercise rounding across the step"); // not a degenerate case
    qInfo("%s: worst error %.3f steps", t.name, worst);
}

void TestGgmlQuants::quantisedGgufGivesTheLogitsOfItsDequantisedWeights_data()
{
    QTest::addColumn<int>("type");
    QTest::addColumn<int>("fileType");
    QTest::newRow("Q8_0") << 8 << 7;
    QTest::newRow("Q4_0") << 2 << 2;
    QTest::newRow("Q5_1") << 7 << 9;
    QTest::newRow("Q4_K (Q4_K_M)") << 12 << 15;
    QTest::newRow("Q5_K (Q5_K_M)") << 13 << 17;
    QTest::newRow("Q6_K") << 14 << 18;
    QTest::newRow("Q2_K") << 10 << 10;
    QTest::newRow("Q3_K (Q3_K_M)") << 11 << 12;
}

void TestGgmlQuants::quantisedGgufGivesTheLogitsOfItsDequantisedWeights()
{
    QFETCH(int, type);
    QFETCH(int, fileType);
    const GgmlBlockType& t = *ggmlBlockType(static_cast<std::uint32_t>(type));
    const fs::path dir = test::scratchDir(std::string("gguf-quant-") + t.name);
    // A one-layer llama whose matrices have rows of 256 (k-quant super-blocks); norms stay F32 as llama.cpp keeps them.
    const std::uint64_t hidden = 256, ffn = 256, vocab = 64, heads = 4, kvHeads = 2, headDim = 64;
    struct Planned {
        std::string name;
        std::uint64_t rows, cols;
        bool quantised;
    };
    const std::vector<Planned> plan = {
        {"token_embd.weight", vocab, hidden, true},   {"blk.0.attn_norm.weight", 1, hidden, false},
        {"blk.0.attn_q.weight", heads * headDim, hidden, true}, {"blk.0.attn_k.weight", kvHeads * headDim, hidden, true},
        {"blk.0.attn_v.weight", kvHeads * headDim, hidden, true}, {"blk.0.attn_output.weight", hidden, heads * headDim, true},
        {"blk.0.ffn_norm.weight", 1, hidden, false},  {"blk.0.ffn_gate.weight", ffn, hidden, true},
        {"blk.0.ffn_up.weight", ffn, hidden, true},   {"blk.0.ffn_down.weight", hidden, ffn, true},
        {"output_norm.weight", 1, hidden, false},     {"output.weight", vocab, hidden, true},
    };
    std::vector<GgufTensor> quantised, plain;
    std::uint64_t seed = 1;
    for (const Planned& p : plan) {
        std::vector<float> x = randomWeights(p.rows * p.cols, seed++);
        if (!p.quantised) {
            for (auto& v : x)
                v = 1.0f + 0.1f * std::tanh(v);
        }
        if (p.quantised) {
            for (auto& v : x)
                v *= 0.02f;
        }
        std::vector<std::uint64_t> dims = p.rows == 1 ? std::vector<std::uint64_t>{p.cols} : std::vector<std::uint64_t>{p.cols, p.rows};
        GgufTensor f32{p.name, dims, 0, {}};
        if (p.quantised) {
            GgufTensor q{p.name, dims, t.id, std::vector<std::uint8_t>(x.size() / t.blockValues * t.blockBytes)};
            std::vector<float> step(x.size());
            for (std::size_t k = 0; k < x.size() / t.blockValues; ++k)
                quantizeBlock(t.id, x.data() + k * t.blockValues, q.data.data() + k * t.blockBytes, step.data() + k * t.blockValues);
            // The F32 twin holds the reference's dequantised values.
            for (std::size_t i = 0; i < x.size(); ++i)
                x[i] = referenceValue(t.id, q.data.data() + (i / t.blockValues) * t.blockBytes, static_cast<int>(i % t.blockValues));
            quantised.push_back(std::move(q));
        } else {
            GgufTensor same{p.name, dims, 0, {}};
            same.data.resize(x.size() * 4);
            std::memcpy(same.data.data(), x.data(), same.data.size());
            quantised.push_back(std::move(same));
        }
        f32.data.resize(x.size() * 4);
        std::memcpy(f32.data.data(), x.data(), f32.data.size());
        plain.push_back(std::move(f32));
    }
    const std::vector<std::pair<std::string, std::uint32_t>> meta = {
        {"llama.embedding_length", hidden}, {"llama.feed_forward_length", ffn}, {"llama.block_count", 1},
        {"llama.attention.head_count", heads}, {"llama.attention.head_count_kv", kvHeads}, {"llama.context_length", 64}};
    writeGguf(dir / "quantised.gguf", meta, static_cast<std::uint32_t>(fileType), quantised);
    writeGguf(dir / "plain.gguf", meta, 0, plain);

    const Model q = loadModel(dir / "quantised.gguf");
    const Model f = loadModel(dir / "plain.gguf");
    const GgufQuantization described = GgufFile::open(dir / "quantised.gguf").quantization();
    QCOMPARE(described.fileType, *ggufFileTypeName(fileType));
    QCOMPARE(described.tensorTypes.at(t.name), std::int64_t(9));
    QCOMPARE(described.tensorTypes.at("F32"), std::int64_t(3));
    QVERIFY(described.quantized);
    QVERIFY(!GgufFile::open(dir / "plain.gguf").quantization().quantized);
    QCOMPARE(q.layers[0].q.dtype(), DType::F32);
    const Transformer a(q), b(f);
    const std::vector<int> ids = {1, 5, 9, 17, 33, 63, 2};
    KvCache ca = a.newCache(static_cast<std::int64_t>(ids.size()));
    KvCache cb = b.newCache(static_cast<std::int64_t>(ids.size()));
    const MatrixRM la = a.forward(ids, ca, Logits::All);
    const MatrixRM lb = b.forward(ids, cb, Logits::All);
    QCOMPARE(la.rows(), lb.rows());
    QVERIFY2(std::memcmp(la.data(), lb.data(), static_cast<std::size_t>(la.size()) * 4) == 0,
             "the quantised model's logits differ from its dequantised twin's");

    // info reports where the weights came from; an export is written in the dtype asked for.
    const auto info = test::runCli({"info", (dir / "quantised.gguf").string(), "--json"});
    QVERIFY2(info.exitCode == 0, info.err.c_str());
    QVERIFY2(info.out.find("\"quantization\": \"" + *ggufFileTypeName(fileType) + "\"") != std::string::npos, info.out.c_str());
    QVERIFY2(info.out.find(std::string("\"") + t.name + "\": 9") != std::string::npos, info.out.c_str());
    // The export is written in the dtype asked for (once is enough: the conversion does not depend on the quantisation).
    for (const char* dtype : {"bf16", "f16"}) {
        if (t.id != 12)
            break;
        const auto converted = test::runCli({"convert", (dir / "quantised.gguf").string(), "--out", (dir / dtype).string(),
                                             "--rope-strategy", "high", "--rope-pairs", "2", "--latent-dim", "64", "--dtype",
                                             dtype, "--quiet", "--json"});
        QVERIFY2(converted.exitCode == 0, converted.err.c_str());
        QVERIFY2(converted.out.find(std::string("\"dtype\": \"") + (dtype == std::string("bf16") ? "BF16" : "F16") + "\"")
                     != std::string::npos,
                 converted.out.c_str());
    }
}

void TestGgmlQuants::unsupportedOrMisshapedQuantisationIsAClearError()
{
    const fs::path dir = test::scratchDir("gguf-quant-errors");
    auto loadError = [](const fs::path& p) {
        try {
            GgufFile::open(p);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    // An IQ type we do not read: named, with the list of what is read.
    writeGguf(dir / "iq.gguf", {}, 0, {{"w", {256, 1}, 16, std::vector<std::uint8_t>(66)}});
    const std::string iq = loadError(dir / "iq.gguf");
    QVERIFY2(iq.find("IQ2_XXS") != std::string::npos && iq.find("Q4_K") != std::string::npos, iq.c_str());
    // Rows that are not a whole number of blocks.
    writeGguf(dir / "rows.gguf", {}, 0, {{"w", {100, 2}, 12, std::vector<std::uint8_t>(288)}});
    const std::string rows = loadError(dir / "rows.gguf");
    QVERIFY2(rows.find("256") != std::string::npos && rows.find("'w'") != std::string::npos, rows.c_str());
}

QTEST_GUILESS_MAIN(TestGgmlQuants)
#include "tst_ggml_quants.moc"
