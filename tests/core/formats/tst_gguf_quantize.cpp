// Q8_0 and Q4_0 against their definitions in ggml (ggml-common.h block layouts, ggml-quants.c reference
// quantisers): blocks built to be exactly representable come back exactly, with the scale and every quant byte
// where the layout puts them (Q4_0: weight j in the low nibble of byte j, weight j + 16 in the high nibble);
// ggml's rounding (roundf: halves away from zero; Q4_0: truncation of x/d + 8.5, clamped to 15) and the sign of the
// Q4_0 scale (the weight of largest magnitude maps to quant 0); random rows stay within the format's error bound;
// zero blocks and non-finite weights.
#include "common/test_support.h"

#include "formats/gguf_quantize.h"
#include "util/error.h"
#include "util/half.h"

#include <cmath>
#include <cstring>
#include <random>

using namespace mla;

namespace {

float scaleOf(const std::uint8_t* block)
{
    std::uint16_t h;
    std::memcpy(&h, block, 2);
    return f16ToFloat(h);
}

} // namespace

class TestGgufQuantize : public QObject {
    Q_OBJECT
private slots:
    void traits();
    void q8ExactBlock();
    void q8RoundsHalfAwayFromZero();
    void q4ExactBlockAndNibbleLayout();
    void q4ScaleSignAndClamp();
    void randomRowsWithinBound();
    void zeroBlocks();
    void nonFiniteRefused();
};

void TestGgufQuantize::traits()
{
    // ggml: block_q8_0 = f16 + 32 int8 (34 bytes), block_q4_0 = f16 + 16 bytes (18 bytes); llama_ftype ids.
    QCOMPARE(ggmlTypeTraits(GgmlType::Q8_0).blockBytes, 34u);
    QCOMPARE(ggmlTypeTraits(GgmlType::Q4_0).blockBytes, 18u);
    QCOMPARE(ggmlRowBytes(GgmlType::Q8_0, 64), std::uint64_t(68));
    QCOMPARE(ggmlRowBytes(GgmlType::Q4_0, 96), std::uint64_t(54));
    QCOMPARE(ggmlRowBytes(GgmlType::BF16, 7), std::uint64_t(14));
    QVERIFY(!ggmlRowFits(GgmlType::Q4_0, 172));
    QVERIFY(ggmlRowFits(GgmlType::F16, 172));
    QCOMPARE(static_cast<std::uint32_t>(GgmlType::Q8_0), 8u);
    QCOMPARE(static_cast<std::uint32_t>(GgmlType::BF16), 30u);
    QCOMPARE(ggmlTypeTraits(GgmlType::Q8_0).fileType, 7u);
    QCOMPARE(ggmlTypeTraits(GgmlType::Q4_0).fileType, 2u);
    QCOMPARE(ggmlTypeTraits(GgmlType::BF16).fileType, 32u);
    QCOMPARE(*ggmlTypeFromUserName("q4_0"), GgmlType::Q4_0);
    QVERIFY(!ggmlTypeFromUserName("q4_k"));
}

void TestGgufQuantize::q8ExactBlock()
{
    // Weights s * q with |q| <= 127 and one of magnitude 127: d = max|x| / 127 = s exactly (a power of two, exact in
    // f16), so every quant is q and the block dequantises to the input exactly.
    const float s = 0.015625f;
    float x[32];
    std::int8_t q[32];
    for (int j = 0; j < 32; ++j) {
        q[j] = static_cast<std::int8_t>((j * 37) % 255 - 127);
        x[j] = s * q[j];
    }
    q[5] = -127;
    x[5] = -127 * s;
    std::uint8_t block[34];
    quantizeRowQ8_0(x, block, 32);
    QCOMPARE(scaleOf(block), s);
    for (int j = 0; j < 32; ++j)
        QCOMPARE(static_cast<std::int8_t>(block[2 + j]), q[j]);
    float y[32];
    dequantizeRowQ8_0(block, y, 32);
    for (int j = 0; j < 32; ++j)
        QCOMPARE(y[j], x[j]);
}

void TestGgufQuantize::q8RoundsHalfAwayFromZero()
{
    // ggml uses roundf (halves away from zero; numpy's round in gguf-py would give 2 and -2 here).
    float x[32] = {};
    x[0] = 127.0f; // d = 1
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.49f;
    std::uint8_t block[34];
    quantizeRowQ8_0(x, block, 32);
    QCOMPARE(scaleOf(block), 1.0f);
    QCOMPARE(static_cast<std::int8_t>(block[2 + 1]), std::int8_t(3));
    QCOMPARE(static_cast<std::int8_t>(block[2 + 2]), std::int8_t(-3));
    QCOMPARE(static_cast<std::int8_t>(block[2 + 3]), std::int8_t(0));
}

void TestGgufQuantize::q4ExactBlockAndNibbleLayout()
{
    // Weights d * (q - 8) with q in 0..15 and the largest magnitude at q = 0 (x = -8d): ggml's d = max / -8 is d.
    const float d = 0.25f;
    int q[32];
    float x[32];
    for (int j = 0; j < 32; ++j) {
        q[j] = 1 + (j * 7) % 15; // 1..15: magnitudes below 8d
        x[j] = d * static_cast<float>(q[j] - 8);
    }
    q[20] = 0;
    x[20] = -8 * d;
    std::uint8_t block[18];
    quantizeRowQ4_0(x, block, 32);
    QCOMPARE(scaleOf(block), d);
    for (int j = 0; j < 16; ++j) {
        QCOMPARE(block[2 + j] & 0x0f, q[j]);
        QCOMPARE(block[2 + j] >> 4, q[j + 16]);
    }
    float y[32];
    dequantizeRowQ4_0(block, y, 32);
    for (int j = 0; j < 32; ++j)
        QCOMPARE(y[j], x[j]);
}

void TestGgufQuantize::q4ScaleSignAndClamp()
{
    // The weight of largest magnitude decides the sign of d: +4 gives d = -0.5, and maps to quant 0.
    float x[32] = {};
    x[0] = 4.0f;
    x[1] = -4.0f + 0.0f; // the same magnitude later: the first one wins (strict comparison in ggml)
    x[2] = 1.0f;         // x/d = -2 -> trunc(6.5) = 6
    x[3] = -0.3f;        // x/d = 0.6 -> trunc(9.1) = 9
    std::uint8_t block[18];
    quantizeRowQ4_0(x, block, 32);
    QCOMPARE(scaleOf(block), -0.5f);
    QCOMPARE(block[2 + 0] & 0x0f, 0);
    QCOMPARE(block[2 + 1] & 0x0f, 15); // -4 / -0.5 = 8 -> trunc(16.5) = 16, clamped to 15
    QCOMPARE(block[2 + 2] & 0x0f, 6);
    QCOMPARE(block[2 + 3] & 0x0f, 9);
    QCOMPARE(block[2 + 4] & 0x0f, 8); // zero
    float y[32];
    dequantizeRowQ4_0(block, y, 32);
    QCOMPARE(y[0], 4.0f);
    QCOMPARE(y[1], -3.5f); // the clamp costs one step on the opposite extreme
}

void TestGgufQuantize::randomRowsWithinBound()
{
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> x(32 * 64);
    for (auto& v : x)
        v = normal(rng);
    for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        std::vector<std::uint8_t> q(ggmlRowBytes(type, static_cast<std::int64_t>(x.size())));
        encodeGgmlRow(type, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
        std::vector<float> y(x.size());
        decodeGgmlRow(type, q.data(), y.data(), static_cast<std::int64_t>(y.size()));
        const std::size_t blockBytes = ggmlTypeTraits(type).blockBytes;
        for (std::size_t b = 0; b < x.size() / 32; ++b) {
            const float d = std::fabs(scaleOf(q.data() + b * blockBytes));
            // Q8_0 rounds to the nearest step (half a step, plus the f16 rounding of d over 127 steps); Q4_0's
            // truncation of x/d + 8.5 also rounds to nearest except the clamped top step (one step).
            const float bound = type == GgmlType::Q8_0 ? 0.5f * d + 127.0f * d * 1e-3f : d * 1.01f;
            for (std::size_t j = b * 32; j < b * 32 + 32; ++j)
                QVERIFY2(std::fabs(y[j] - x[j]) <= bound, qPrintable(QString("block %1 weight %2").arg(b).arg(j)));
        }
    }
}

void TestGgufQuantize::zeroBlocks()
{
    const float x[32] = {};
    std::uint8_t q8[34];
    std::uint8_t q4[18];
    quantizeRowQ8_0(x, q8, 32);
    quantizeRowQ4_0(x, q4, 32);
    QCOMPARE(scaleOf(q8), 0.0f);
    QCOMPARE(scaleOf(q4), 0.0f);
    for (int j = 0; j < 32; ++j)
        QCOMPARE(q8[2 + j], std::uint8_t(0));
    for (int j = 0; j < 16; ++j)
        QCOMPARE(q4[2 + j], std::uint8_t(0x88));
}

void TestGgufQuantize::nonFiniteRefused()
{
    float x[32] = {};
    x[7] = std::nanf("");
    std::uint8_t out[34];
    QVERIFY_THROWS_EXCEPTION(Error, quantizeRowQ8_0(x, out, 32));
    x[7] = INFINITY;
    QVERIFY_THROWS_EXCEPTION(Error, quantizeRowQ4_0(x, out, 32));
}

QTEST_GUILESS_MAIN(TestGgufQuantize)
#include "tst_gguf_quantize.moc"
