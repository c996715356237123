// The KV cache row encoding (kv_codec.h): the F16 rounding of scales and zero points, the round-trip error bound of
// every format per group size, int4 / int8 bytes against a plain reference encoder, the SIMD decoders against the
// generic ones, the format names and the bytes per row.
#include "common/test_support.h"
#include "engine/kv_codec.h"
#include "util/error.h"
#include "util/half.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using namespace mla;

namespace {

// Every finite F16 value, ascending: the independent reference for rounding to F16 from below / above.
const std::vector<float>& finiteHalves()
{
    static const std::vector<float> values = [] {
        std::vector<float> v;
        for (std::uint32_t h = 0; h < 0x10000u; ++h) {
            const float f = f16ToFloat(static_cast<std::uint16_t>(h));
            if (std::isfinite(f) && h != 0x8000u) // -0 rounds nothing: +0 stands for zero
                v.push_back(f);
        }
        std::sort(v.begin(), v.end());
        return v;
    }();
    return values;
}

float halfAtMost(float v)
{
    const auto& h = finiteHalves();
    return *(std::upper_bound(h.begin(), h.end(), v) - 1);
}

float halfAtLeast(float v)
{
    const auto& h = finiteHalves();
    return *std::lower_bound(h.begin(), h.end(), v);
}

float clampHalf(float v)
{
    return std::isnan(v) ? 0.0f : std::clamp(v, -65504.0f, 65504.0f);
}

// The encoding as kv_codec.h describes it, written out plainly: the reference the codec's bytes must equal.
std::vector<std::uint8_t> referenceEncode(const std::vector<float>& x, const CachePartFormat& f)
{
    const std::int64_t width = static_cast<std::int64_t>(x.size());
    const bool int4 = f.type == CacheFormat::Int4;
    const int levels = cacheFormatLevels(f.type);
    const std::int64_t g = std::min<std::int64_t>(f.groupSize, width);
    const std::size_t dataBytes = int4 ? static_cast<std::size_t>((width + 1) / 2) : static_cast<std::size_t>(width);
    std::vector<std::uint8_t> out(dataBytes, 0);
    std::vector<std::uint8_t> params;
    for (std::int64_t first = 0; first < width; first += g) {
        const std::int64_t last = std::min(width, first + g);
        float lo = INFINITY, hi = -INFINITY;
        for (std::int64_t i = first; i < last; ++i) {
            lo = std::min(lo, clampHalf(x[i]));
            hi = std::max(hi, clampHalf(x[i]));
        }
        const float m = halfAtMost(lo);
        const float s = halfAtLeast((hi - m) / static_cast<float>(levels));
        for (float p : {s, m}) {
            const std::uint16_t bits = floatToF16(p);
            params.push_back(static_cast<std::uint8_t>(bits & 0xff));
            params.push_back(static_cast<std::uint8_t>(bits >> 8));
        }
        for (std::int64_t i = first; i < last; ++i) {
            int q = 0;
            if (s > 0.0f)
                q = static_cast<int>(std::clamp(std::nearbyint((clampHalf(x[i]) - m) / s), 0.0f, static_cast<float>(levels)));
            if (!int4)
                out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(q);
            else
                out[static_cast<std::size_t>(i / 2)] |= static_cast<std::uint8_t>(i % 2 == 0 ? q : q << 4);
        }
    }
    out.insert(out.end(), params.begin(), params.end());
    return out;
}

// Rows with the shapes real caches have: centred and off-centre, with outliers, constant, tiny and huge values.
std::vector<std::vector<float>> testRows(std::int64_t width, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<std::vector<float>> rows;
    for (int kind = 0; kind < 7; ++kind) {
        std::vector<float> r(static_cast<std::size_t>(width));
        for (auto& v : r) {
            const float z = normal(rng);
            switch (kind) {
            case 0: v = z; break;
            case 1: v = 3.0f + 0.5f * z; break;             // far from zero: what a zero point is for
            case 2: v = z * (normal(rng) > 2.0f ? 40.0f : 1.0f); break; // outliers
            case 3: v = 0.25f; break;                        // constant
            case 4: v = 1e-6f * z; break;                    // subnormal F16 scales
            case 5: v = 3000.0f * z; break;                  // large
            default: v = -7.0f + 0.01f * z; break;            // narrow range far below zero
            }
        }
        rows.push_back(std::move(r));
    }
    return rows;
}

float ulp(float v)
{
    return std::nextafter(std::abs(v), INFINITY) - std::abs(v);
}

} // namespace

class TestKvCodec : public QObject {
    Q_OBJECT
private slots:
    void halfRoundingFromBelowAndAbove();
    void roundTripWithinTheFormatBound_data();
    void roundTripWithinTheFormatBound();
    void quantisedBytesEqualAPlainReference_data();
    void quantisedBytesEqualAPlainReference();
    void nibblesSitWhereTheLayoutSays();
    void nonFiniteValuesAreClampedNotUndefined();
    void simdDecodersMatchTheGenericOnes();
    void namesPrintAndParse();
    void bytesPerRow();
};

void TestKvCodec::halfRoundingFromBelowAndAbove()
{
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> exponent(-30.0f, 17.0f);
    std::vector<float> values{0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, -65504.0f, 70000.0f, -1e9f, 1e-8f, -1e-8f, 5.9604645e-8f,
                              6.1035156e-5f, 6.1e-5f, -6.1e-5f, 2049.0f, -2049.0f};
    for (int i = 0; i < 20000; ++i)
        values.push_back((rng() & 1 ? 1.0f : -1.0f) * std::exp2(exponent(rng)));
    for (float v : values) {
        const float below = f16ToFloat(f16AtMost(v));
        const float above = f16ToFloat(f16AtLeast(v));
        QCOMPARE(below, halfAtMost(clampHalf(v)));
        QCOMPARE(above, halfAtLeast(clampHalf(v)));
    }
    QCOMPARE(f16ToFloat(f16AtMost(NAN)), 0.0f);
}

void TestKvCodec::roundTripWithinTheFormatBound_data()
{
    QTest::addColumn<int>("type");
    QTest::addColumn<int>("group");
    for (CacheFormat f : {CacheFormat::Int8, CacheFormat::Int4}) {
        for (int g : {1, 7, 16, 32, 64, 128}) {
            const QByteArray name = QByteArray(cacheFormatName(f).data()) + "/" + QByteArray::number(g);
            QTest::newRow(name.constData()) << int(f) << g;
        }
    }
    QTest::newRow("bf16") << int(CacheFormat::BF16) << 64;
    QTest::newRow("f32") << int(CacheFormat::F32) << 64;
}

void TestKvCodec::roundTripWithinTheFormatBound()
{
    QFETCH(int, type);
    QFETCH(int, group);
    const CachePartFormat f{static_cast<CacheFormat>(type), group};
    const int levels = cacheFormatLevels(f.type);
    double worstStep = 0.0; // largest error / (range / levels) seen: how tight the bound is in practice
    for (std::int64_t width : {1, 5, 24, 63, 64, 65, 130, 200}) {
        for (const auto& x : testRows(width, static_cast<std::uint64_t>(width * 31 + group))) {
            std::vector<std::uint8_t> bytes(f.rowBytes(width));
            encodeCacheRow(x.data(), width, f, bytes.data());
            std::vector<float> y(static_cast<std::size_t>(width));
            decodeCacheRows(bytes.data(), 1, width, f, y.data(), width);
            if (f.type == CacheFormat::F32) {
                QVERIFY(x == y);
                continue;
            }
            if (f.type == CacheFormat::BF16) {
                for (std::int64_t i = 0; i < width; ++i)
                    QVERIFY(std::abs(y[i] - x[i]) <= std::ldexp(std::abs(x[i]), -8));
                continue;
            }
            const std::int64_t g = f.groupWidth(width);
            for (std::int64_t first = 0; first < width; first += g) {
                const std::int64_t last = std::min(width, first + g);
                float lo = INFINITY, hi = -INFINITY;
                for (std::int64_t i = first; i < last; ++i) {
                    lo = std::min(lo, x[i]);
                    hi = std::max(hi, x[i]);
                }
                // The format's bound: the step is at most range/levels, widened by the F16 rounding of the step (2^-10
                // relative, or the smallest subnormal) and of the minimum (below it by less than one F16 ulp); every
                // element decodes within half a step, plus float rounding.
                const double range = static_cast<double>(hi) - lo + (lo - halfAtMost(lo));
                const double step = range / levels * (1.0 + std::ldexp(1.0, -10)) + std::ldexp(1.0, -24);
                for (std::int64_t i = first; i < last; ++i) {
                    const double error = std::abs(static_cast<double>(y[i]) - x[i]);
                    const double bound = 0.5 * step * (1.0 + 1e-5) + 4.0 * ulp(std::max(std::abs(hi), std::abs(lo)));
                    if (!(error <= bound))
                        QFAIL(qPrintable(QStringLiteral("width %1 element %2: |%3 - %4| = %5 > bound %6")
                                             .arg(width).arg(i).arg(double(y[i])).arg(double(x[i])).arg(error).arg(bound)));
                    if (range / levels > 1e-3) // steps above the F16 subnormal floor
                        worstStep = std::max(worstStep, error / (range / levels));
                }
            }
        }
    }
    // Rounding to the nearest code: the worst error is close to half a step, never more (a group of one element
    // decodes to its F16 rounding).
    if (f.quantised() && group > 1)
        QVERIFY2(worstStep > 0.4 && worstStep <= 0.5 + 1e-3, qPrintable(QString::number(worstStep)));
}

void TestKvCodec::quantisedBytesEqualAPlainReference_data()
{
    QTest::addColumn<int>("type");
    QTest::addColumn<int>("group");
    for (CacheFormat f : {CacheFormat::Int8, CacheFormat::Int4}) {
        for (int g : {1, 3, 16, 64}) {
            const QByteArray name = QByteArray(cacheFormatName(f).data()) + "/" + QByteArray::number(g);
            QTest::newRow(name.constData()) << int(f) << g;
        }
    }
}

void TestKvCodec::quantisedBytesEqualAPlainReference()
{
    QFETCH(int, type);
    QFETCH(int, group);
    const CachePartFormat f{static_cast<CacheFormat>(type), group};
    for (std::int64_t width : {1, 2, 5, 8, 33, 64, 100, 129}) {
        for (const auto& x : testRows(width, static_cast<std::uint64_t>(width + 7 * group))) {
            std::vector<std::uint8_t> bytes(f.rowBytes(width), 0xa5); // garbage: every byte must be written
            encodeCacheRow(x.data(), width, f, bytes.data());
            const std::vector<std::uint8_t> reference = referenceEncode(x, f);
            QCOMPARE(bytes.size(), reference.size());
            QVERIFY2(bytes == reference, qPrintable(QStringLiteral("width %1").arg(width)));
        }
    }
}

void TestKvCodec::nibblesSitWhereTheLayoutSays()
{
    // int4 rows whose codes are known: values 0..15 with a zero point give codes 0..15 exactly (minimum 0, step 1).
    const CachePartFormat f{CacheFormat::Int4, 64};
    std::vector<float> x;
    for (int i = 0; i < 17; ++i)
        x.push_back(static_cast<float>((i * 7) % 16));
    x[0] = 0.0f;
    x[1] = 15.0f;
    std::vector<std::uint8_t> bytes(f.rowBytes(17));
    encodeCacheRow(x.data(), 17, f, bytes.data());
    for (int i = 0; i < 17; ++i) {
        const int nibble = i % 2 == 0 ? bytes[static_cast<std::size_t>(i / 2)] & 0x0f : bytes[static_cast<std::size_t>(i / 2)] >> 4;
        QCOMPARE(nibble, static_cast<int>(x[static_cast<std::size_t>(i)]));
    }
    QCOMPARE(bytes[8] >> 4, 0); // the unused high nibble of an odd-width row
    QCOMPARE(f16ToFloat(static_cast<std::uint16_t>(bytes[9] | (bytes[10] << 8))), 1.0f); // scale
    QCOMPARE(f16ToFloat(static_cast<std::uint16_t>(bytes[11] | (bytes[12] << 8))), 0.0f); // minimum
}

void TestKvCodec::nonFiniteValuesAreClampedNotUndefined()
{
    // NaN encodes as 0 and infinities saturate at the F16 range; the other values of their groups still decode.
    for (CacheFormat t : {CacheFormat::Int8, CacheFormat::Int4}) {
        const CachePartFormat f{t, 4};
        const std::vector<float> x{NAN, 1.0f, 0.5f, -2.0f, INFINITY, -INFINITY, 1e30f, 3.0f};
        std::vector<std::uint8_t> bytes(f.rowBytes(8));
        encodeCacheRow(x.data(), 8, f, bytes.data());
        std::vector<float> y(8);
        decodeCacheRows(bytes.data(), 1, 8, f, y.data(), 8);
        const float step = 3.0f / 15.0f; // the coarsest step of group 0 (range 3)
        QVERIFY(std::abs(y[0]) <= step && std::abs(y[1] - 1.0f) <= step && std::abs(y[2] - 0.5f) <= step && std::abs(y[3] + 2.0f) <= step);
        const float saturated = 2.0f * 65504.0f / 15.0f;
        QVERIFY(y[4] >= 65504.0f - saturated && y[4] <= 65504.0f * 1.001f);
        QVERIFY(y[5] <= -65504.0f + saturated && y[5] >= -65504.0f * 1.001f);
        QVERIFY(y[6] >= 65504.0f - saturated);
    }
}

void TestKvCodec::simdDecodersMatchTheGenericOnes()
{
    const detail::KvCodecKernels& generic = detail::genericKvCodec();
    const detail::KvCodecKernels* simd = detail::avx2KvCodec();
    if (!simd || &detail::activeKvCodec() == &generic)
        QSKIP("this CPU runs the generic decoders only");
    std::mt19937_64 rng(11);
    std::vector<std::uint8_t> data(512);
    for (auto& b : data)
        b = static_cast<std::uint8_t>(rng());
    for (std::int64_t first : {0, 1, 2, 15, 16, 33}) {
        for (std::int64_t n : {1, 7, 16, 17, 31, 64, 100}) {
            std::vector<float> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
            generic.int4(data.data(), first, n, 0.0371f, -1.25f, a.data());
            simd->int4(data.data(), first, n, 0.0371f, -1.25f, b.data());
            for (std::int64_t i = 0; i < n; ++i) // one FMA against a multiply and an add
                QVERIFY(std::abs(a[i] - b[i]) <= 2.0f * ulp(std::max(std::abs(a[i]), 1.25f)));
            generic.int8(data.data() + first, n, 0.0123f, -0.5f, a.data());
            simd->int8(data.data() + first, n, 0.0123f, -0.5f, b.data());
            for (std::int64_t i = 0; i < n; ++i)
                QVERIFY(std::abs(a[i] - b[i]) <= 2.0f * ulp(std::max(std::abs(a[i]), 0.5f)));
            generic.bf16(data.data() + first, n, a.data());
            simd->bf16(data.data() + first, n, b.data());
            QVERIFY(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0); // NaN payloads too
        }
    }
}

void TestKvCodec::namesPrintAndParse()
{
    for (CacheFormat t : {CacheFormat::F32, CacheFormat::BF16, CacheFormat::Int8, CacheFormat::Int4}) {
        for (std::int64_t g : {1, 32, 64, 1000}) {
            CachePartFormat f{t, kDefaultCacheGroupSize};
            if (f.quantised())
                f.groupSize = g;
            CachePartFormat back;
            QVERIFY(parseCachePart(cachePartName(f), back));
            QCOMPARE(back, f);
        }
    }
    CachePartFormat p;
    QVERIFY(parseCachePart("int4", p));
    QCOMPARE(p, (CachePartFormat{CacheFormat::Int4, 64}));
    QCOMPARE(cachePartName(p), std::string("int4/64"));
    QVERIFY(parseCachePart("int8/32", p));
    QCOMPARE(p.groupSize, std::int64_t(32));
    for (const char* bad : {"", "int3", "INT4", "bf16/32", "f32/1", "int4/0", "int4/", "int4/x", "int4/32x", "int4/-1", "int4/65537"})
        QVERIFY2(!parseCachePart(bad, p), bad);

    const KvCacheFormat mixed{{CacheFormat::Int4, 32}, {CacheFormat::BF16, 64}};
    QCOMPARE(kvCacheFormatName(mixed), std::string("int4/32+rope:bf16"));
    KvCacheFormat k;
    QVERIFY(parseKvCacheFormat(kvCacheFormatName(mixed), k));
    QCOMPARE(k, mixed);
    QVERIFY(parseKvCacheFormat("int8/16", k));
    QCOMPARE(k, KvCacheFormat::uniform({CacheFormat::Int8, 16}));
    QVERIFY(parseKvCacheFormat("int4", k));
    QCOMPARE(k.rope, defaultRopeFormat(k.latent));
    QVERIFY(!parseKvCacheFormat("int4+rope:", k));
    QVERIFY(!parseKvCacheFormat("int4+rope:int2", k));

    // The user's settings: a group size applies where the name carries none; bad values name the setting.
    QCOMPARE(kvCacheFormatFromSettings("", "", 0), KvCacheFormat{});
    QCOMPARE(kvCacheFormatFromSettings("int4", "bf16", 32), (KvCacheFormat{{CacheFormat::Int4, 32}, {CacheFormat::BF16, 32}}));
    QCOMPARE(kvCacheFormatFromSettings("int4/16", "int8", 32), (KvCacheFormat{{CacheFormat::Int4, 16}, {CacheFormat::Int8, 32}}));
    QCOMPARE(kvCacheFormatFromSettings("int4", "", 0).rope, defaultRopeFormat({CacheFormat::Int4, 64}));
    try {
        kvCacheFormatFromSettings("int5", "", 0);
        QFAIL("int5 accepted");
    } catch (const Error& e) {
        QVERIFY(std::string(e.what()).find("int5") != std::string::npos);
    }
    QVERIFY_THROWS_EXCEPTION(Error, kvCacheFormatFromSettings("int4", "fp8", 0));
    QVERIFY_THROWS_EXCEPTION(Error, kvCacheFormatFromSettings("int4", "", -3));
}

void TestKvCodec::bytesPerRow()
{
    // Elements, then per group the F16 scale and F16 minimum.
    const std::size_t int4Params = 4, int8Params = 4;
    QCOMPARE((CachePartFormat{CacheFormat::F32, 64}).rowBytes(100), std::size_t(400));
    QCOMPARE((CachePartFormat{CacheFormat::BF16, 64}).rowBytes(100), std::size_t(200));
    QCOMPARE((CachePartFormat{CacheFormat::Int8, 64}).rowBytes(128), 128 + 2 * int8Params);
    QCOMPARE((CachePartFormat{CacheFormat::Int8, 64}).rowBytes(100), 100 + 2 * int8Params); // a short last group pays too
    QCOMPARE((CachePartFormat{CacheFormat::Int4, 64}).rowBytes(128), 64 + 2 * int4Params);
    QCOMPARE((CachePartFormat{CacheFormat::Int4, 64}).rowBytes(5), 3 + int4Params); // narrower than a group: one group
    QCOMPARE((CachePartFormat{CacheFormat::Int4, 3}).rowBytes(7), 4 + 3 * int4Params);
    QCOMPARE((CachePartFormat{CacheFormat::Int4, 64}).groupWidth(24), std::int64_t(24));
}

QTEST_APPLESS_MAIN(TestKvCodec)
#include "tst_kv_codec.moc"
