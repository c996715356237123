// The safetensors reader and writer: round trips (F32 bit-exact, F16/BF16 rounding checked against an independent
// reference), the 8-byte-aligned header, the streaming writer's contract, sharded collections, and every class of
// malformed input on hand-built byte buffers, both through parseSafetensorsHeader and through files.
#include "common/test_support.h"

#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "tensor/tensor.h"
#include "util/error.h"
#include "util/half.h"

#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

using mla::test::fileBytes;

using mla::test::writeBytes;

// A safetensors file from a header text and a data section, with the header length field given explicitly (so that
// it can lie).
std::vector<std::uint8_t> rawFile(const std::string& header, std::size_t dataBytes, std::uint64_t lengthField)
{
    std::vector<std::uint8_t> out(8 + header.size() + dataBytes);
    std::memcpy(out.data(), &lengthField, 8);
    if (!header.empty())
        std::memcpy(out.data() + 8, header.data(), header.size());
    for (std::size_t i = 0; i < dataBytes; ++i)
        out[8 + header.size() + i] = static_cast<std::uint8_t>(i * 7 + 1);
    return out;
}

std::vector<std::uint8_t> rawFile(const std::string& header, std::size_t dataBytes)
{
    return rawFile(header, dataBytes, header.size());
}

// The error message of parsing `bytes` as a safetensors file, or "" if it parsed.
std::string safetensorsParseError(const std::vector<std::uint8_t>& bytes, const fs::path& name = "case.safetensors")
{
    try {
        parseSafetensorsHeader(bytes.data(), bytes.size(), bytes.size(), name);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string openError(const fs::path& path)
{
    try {
        SafetensorsFile::open(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string collectionError(const fs::path& path)
{
    try {
        SafetensorsCollection::open(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Independent reference rounding: the representable value nearest to x (ties to the even bit pattern), found by
// searching a sorted table of every finite non-negative value of the 16-bit format.
struct HalfTable {
    std::vector<double> values;     // ascending
    std::vector<std::uint16_t> bits;
};

HalfTable makeTable(bool bf16)
{
    HalfTable t;
    for (std::uint32_t b = 0; b < 0x8000u; ++b) {
        double v;
        if (bf16) {
            const std::uint32_t e = (b >> 7) & 0xffu;
            const std::uint32_t m = b & 0x7fu;
            if (e == 0xffu)
                continue;
            v = e == 0 ? std::ldexp(static_cast<double>(m), -133) : std::ldexp(1.0 + m / 128.0, static_cast<int>(e) - 127);
        } else {
            const std::uint32_t e = (b >> 10) & 0x1fu;
            const std::uint32_t m = b & 0x3ffu;
            if (e == 0x1fu)
                continue;
            v = e == 0 ? std::ldexp(static_cast<double>(m), -24) : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
        }
        t.values.push_back(v);
        t.bits.push_back(static_cast<std::uint16_t>(b));
    }
    return t;
}

std::uint16_t referenceRound(const HalfTable& t, float f, bool bf16)
{
    const std::uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
    const double a = std::fabs(static_cast<double>(f));
    const std::uint16_t inf = bf16 ? 0x7f80u : 0x7c00u;
    if (std::isinf(f))
        return sign | inf;
    const double maxFinite = t.values.back();
    // Beyond the largest finite value by half an ulp of it (or more) rounds to infinity.
    const double ulp = maxFinite - t.values[t.values.size() - 2];
    if (a >= maxFinite + ulp / 2)
        return sign | inf;
    auto it = std::lower_bound(t.values.begin(), t.values.end(), a);
    std::size_t hi = static_cast<std::size_t>(it - t.values.begin());
    if (hi == t.values.size())
        return sign | t.bits.back();
    if (t.values[hi] == a || hi == 0)
        return sign | t.bits[hi];
    const std::size_t lo = hi - 1;
    const double dlo = a - t.values[lo];
    const double dhi = t.values[hi] - a;
    if (dlo < dhi)
        return sign | t.bits[lo];
    if (dhi < dlo)
        return sign | t.bits[hi];
    return sign | ((t.bits[lo] & 1u) == 0 ? t.bits[lo] : t.bits[hi]);
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

private slots:
    void roundTripF32IsBitExact();
    void headerIsEightByteAligned();
    void halfConversionsMatchReference();
    void writerConvertsToDeclaredDtype();
    void streamingWriterContract();
    void malformedHeaders_data();
    void malformedHeaders();
    void malformedFiles();
    void truncationAtEveryOffset();
    void hugeLengthsNeverAllocate();
    void shardedCollection();
    void malformedIndex();
    void realCheckpointParses();
};

void TestSafetensors::roundTripF32IsBitExact()
{
    const fs::path dir = test::scratchDir("roundtrip");
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> a(3 * 5), b(7), c(2 * 3 * 4);
    for (auto* v : {&a, &b, &c})
        for (auto& x : *v)
            x = normal(rng);
    // Special values survive an F32 round trip bit for bit.
    a[0] = std::numeric_limits<float>::denorm_min();
    a[1] = -0.0f;
    a[2] = std::numeric_limits<float>::infinity();
    a[3] = std::numeric_limits<float>::max();

    const std::vector<std::pair<std::string, Tensor>> tensors = {
        {"a.weight", Tensor::fromFloats(DType::F32, {3, 5}, a.data())},
        {"b.bias", Tensor::fromFloats(DType::F32, {7}, b.data())},
        {"c.cube", Tensor::fromFloats(DType::F32, {2, 3, 4}, c.data())},
        {"d.empty", Tensor::fromFloats(DType::F32, {0, 4}, a.data())},
    };
    const fs::path file = dir / "t.safetensors";
    writeSafetensors(file, tensors, {{"format", "pt"}, {"note", "hello"}});

    const SafetensorsFile f = SafetensorsFile::open(file);
    QCOMPARE(f.names().size(), std::size_t(4));
    QCOMPARE(f.header().metadata.at("format"), std::string("pt"));
    QCOMPARE(f.header().metadata.at("note"), std::string("hello"));
    // Declaration order is data order.
    QCOMPARE(f.header().entries[0].name, std::string("a.weight"));
    QCOMPARE(f.header().entries[0].begin, std::uint64_t(0));
    for (const auto& [name, original] : tensors) {
        QVERIFY(f.contains(name));
        const Tensor t = f.tensor(name);
        QVERIFY(t.dtype() == DType::F32);
        QCOMPARE(t.shape(), original.shape());
        QVERIFY(!t.empty()); // even the empty one counts as present
        if (t.numel() > 0)
            QVERIFY(std::memcmp(t.data(), original.data(), t.bytes()) == 0);
    }
    QVERIFY(!f.contains("missing"));
    QVERIFY_THROWS_EXCEPTION(Error, f.tensor("missing"));

    // The collection over the single file (by file and by folder) sees the same tensors.
    const auto byFile = SafetensorsCollection::open(file);
    QCOMPARE(byFile.names().size(), std::size_t(4));
    QCOMPARE(byFile.totalBytes(), std::uint64_t((15 + 7 + 24) * 4));
    fs::rename(file, dir / "model.safetensors");
    const auto byFolder = SafetensorsCollection::open(dir);
    QVERIFY(byFolder.contains("c.cube"));
    QCOMPARE(byFolder.tensor("c.cube").toFloats(), c);
}

void TestSafetensors::headerIsEightByteAligned()
{
    const fs::path dir = test::scratchDir("aligned");
    // Names of every length 1..16 shift the header length through every residue mod 8.
    for (int n = 1; n <= 16; ++n) {
        const float v[2] = {1.0f, 2.0f};
        const fs::path file = dir / ("f" + std::to_string(n) + ".safetensors");
        writeSafetensors(file, {{std::string(static_cast<std::size_t>(n), 'x'), Tensor::fromFloats(DType::F32, {2}, v)}});
        const auto bytes = fileBytes(file);
        std::uint64_t length = 0;
        std::memcpy(&length, bytes.data(), 8);
        QCOMPARE((8 + length) % 8, std::uint64_t(0));
        QCOMPARE(bytes.size(), std::size_t(8 + length + 8));
        const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(length));
        // Padding is trailing spaces after valid JSON.
        QVERIFY(nlohmann::json::parse(header).is_object());
        QVERIFY(header.find_last_not_of(' ') == header.find_last_of('}'));
        const auto parsed = SafetensorsFile::open(file);
        QCOMPARE(parsed.header().dataStart % 8, std::uint64_t(0));
        QCOMPARE(parsed.tensor(std::string(static_cast<std::size_t>(n), 'x')).toFloats(), std::vector<float>({1.0f, 2.0f}));
    }
}

void TestSafetensors::halfConversionsMatchReference()
{
    const HalfTable f16 = makeTable(false);
    const HalfTable bf16 = makeTable(true);

    // Every 16-bit pattern decodes to the exact value of the format (checked in double), and re-encodes to itself.
    for (std::uint32_t b = 0; b < 0x10000u; ++b) {
        const auto h = static_cast<std::uint16_t>(b);
        const float x = f16ToFloat(h);
        const float y = bf16ToFloat(h);
        const std::uint32_t magnitude = b & 0x7fffu;
        const double sign = (b & 0x8000u) ? -1.0 : 1.0;
        if ((magnitude >> 10) != 0x1fu) {
            const auto it = std::lower_bound(f16.bits.begin(), f16.bits.end(), static_cast<std::uint16_t>(magnitude));
            QCOMPARE(static_cast<double>(x), sign * f16.values[static_cast<std::size_t>(it - f16.bits.begin())]);
            QCOMPARE(floatToF16(x), h);
        } else if ((magnitude & 0x3ffu) == 0) {
            QVERIFY(std::isinf(x));
            QCOMPARE(floatToF16(x), h);
        } else {
            QVERIFY(std::isnan(x));
            QVERIFY(std::isnan(f16ToFloat(floatToF16(x))));
        }
        if ((magnitude >> 7) != 0xffu) {
            const auto it = std::lower_bound(bf16.bits.begin(), bf16.bits.end(), static_cast<std::uint16_t>(magnitude));
            QCOMPARE(static_cast<double>(y), sign * bf16.values[static_cast<std::size_t>(it - bf16.bits.begin())]);
            QCOMPARE(floatToBf16(y), h);
        } else if ((magnitude & 0x7fu) == 0) {
            QVERIFY(std::isinf(y));
        } else {
            QVERIFY(std::isnan(y));
            QVERIFY(std::isnan(bf16ToFloat(floatToBf16(y))));
        }
    }

    // Random floats of every magnitude, plus exact ties, round to nearest even as the reference says; both through the
    // scalar helpers and through the bulk conversion the writer uses.
    std::mt19937 rng(11);
    std::vector<float> values;
    for (int i = 0; i < 200000; ++i) {
        std::uint32_t bits = rng();
        // Keep within |x| < 2^40 so that both formats' interesting ranges are dense in the sample.
        const std::uint32_t exponent = 60 + (bits >> 24) % 110;
        bits = (bits & 0x807fffffu) | (exponent << 23);
        values.push_back(std::bit_cast<float>(bits));
    }
    for (float tie : {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11), 1.0f + std::ldexp(1.0f, -8),
                      1.0f + 3 * std::ldexp(1.0f, -8), std::ldexp(1.0f, -25), 3 * std::ldexp(1.0f, -25), 65519.0f,
                      65520.0f, 65504.0f, -65520.0f, 1e-8f, 0.0f, -0.0f})
        values.push_back(tie);
    std::vector<std::uint16_t> bulkF16(values.size()), bulkBf16(values.size());
    convertFromFloat(DType::F16, values.data(), bulkF16.data(), values.size());
    convertFromFloat(DType::BF16, values.data(), bulkBf16.data(), values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t e16 = referenceRound(f16, values[i], false);
        const std::uint16_t eb16 = referenceRound(bf16, values[i], true);
        if (floatToF16(values[i]) != e16 || bulkF16[i] != e16 || floatToBf16(values[i]) != eb16 || bulkBf16[i] != eb16)
            QFAIL(qPrintable(QString("rounding of %1 (bits %2): f16 %3/%4 expected %5, bf16 %6/%7 expected %8")
                                 .arg(static_cast<double>(values[i]), 0, 'g', 10)
                                 .arg(std::bit_cast<std::uint32_t>(values[i]), 8, 16, QChar('0'))
                                 .arg(floatToF16(values[i]), 4, 16).arg(bulkF16[i], 4, 16).arg(e16, 4, 16)
                                 .arg(floatToBf16(values[i]), 4, 16).arg(bulkBf16[i], 4, 16).arg(eb16, 4, 16)));
    }
    // The bulk decoders agree with the scalar ones for every pattern.
    std::vector<std::uint16_t> all(0x10000);
    for (std::uint32_t b = 0; b < 0x10000u; ++b)
        all[b] = static_cast<std::uint16_t>(b);
    std::vector<float> decodedF16(all.size()), decodedBf16(all.size());
    convertToFloat(DType::F16, all.data(), decodedF16.data(), all.size());
    convertToFloat(DType::BF16, all.data(), decodedBf16.data(), all.size());
    for (std::uint32_t b = 0; b < 0x10000u; ++b) {
        const float s16 = f16ToFloat(static_cast<std::uint16_t>(b));
        const float sb16 = bf16ToFloat(static_cast<std::uint16_t>(b));
        QVERIFY(std::bit_cast<std::uint32_t>(decodedF16[b]) == std::bit_cast<std::uint32_t>(s16) || (std::isnan(s16) && std::isnan(decodedF16[b])));
        QVERIFY(std::bit_cast<std::uint32_t>(decodedBf16[b]) == std::bit_cast<std::uint32_t>(sb16) || (std::isnan(sb16) && std::isnan(decodedBf16[b])));
    }
}

void TestSafetensors::writerConvertsToDeclaredDtype()
{
    const fs::path dir = test::scratchDir("convert");
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<float> values(6 * 10);
    for (auto& v : values)
        v = normal(rng);
    const fs::path file = dir / "mixed.safetensors";
    {
        SafetensorsWriter writer(file, {{"as_f16", DType::F16, {6, 10}}, {"as_bf16", DType::BF16, {6, 10}},
                                        {"from_tensor_bf16", DType::BF16, {6, 10}}, {"keep_f32", DType::F32, {6, 10}}});
        writer.writeNext("as_f16", values.data(), values.size());
        writer.writeNext("as_bf16", values.data(), values.size());
        writer.writeNext("from_tensor_bf16", Tensor::fromFloats(DType::F32, {6, 10}, values.data()));
        writer.writeNext("keep_f32", Tensor::fromFloats(DType::F32, {6, 10}, values.data()));
        writer.finish();
        QCOMPARE(writer.bytesWritten(), fs::file_size(file));
    }
    const SafetensorsFile f = SafetensorsFile::open(file);
    const Tensor h = f.tensor("as_f16");
    const Tensor b = f.tensor("as_bf16");
    const Tensor b2 = f.tensor("from_tensor_bf16");
    QVERIFY(h.dtype() == DType::F16);
    QVERIFY(b.dtype() == DType::BF16);
    QCOMPARE(h.bytes(), std::size_t(120));
    const auto* hb = static_cast<const std::uint16_t*>(h.data());
    const auto* bb = static_cast<const std::uint16_t*>(b.data());
    const auto* bb2 = static_cast<const std::uint16_t*>(b2.data());
    const std::vector<float> hf = h.toFloats();
    const std::vector<float> bf = b.toFloats();
    for (std::size_t i = 0; i < values.size(); ++i) {
        QCOMPARE(hb[i], floatToF16(values[i]));
        QCOMPARE(bb[i], floatToBf16(values[i]));
        QCOMPARE(bb2[i], bb[i]);
        QCOMPARE(hf[i], f16ToFloat(hb[i]));
        QCOMPARE(bf[i], bf16ToFloat(bb[i]));
        // Round to nearest: within half an ulp of the format.
        QVERIFY(std::fabs(hf[i] - values[i]) <= std::max(std::fabs(values[i]) * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25)));
        QVERIFY(std::fabs(bf[i] - values[i]) <= std::fabs(values[i]) * std::ldexp(1.0f, -8));
    }
    QCOMPARE(f.tensor("keep_f32").toFloats(), values);

    // Writing an F16 tensor into an F16 declaration copies its bytes untouched; into F32 it widens exactly.
    const fs::path again = dir / "again.safetensors";
    writeSafetensors(again, {{"h", h}});
    const SafetensorsFile g = SafetensorsFile::open(again);
    QVERIFY(std::memcmp(g.tensor("h").data(), h.data(), h.bytes()) == 0);
    SafetensorsWriter widen(dir / "widen.safetensors", {{"h", DType::F32, {6, 10}}});
    widen.writeNext("h", h);
    widen.finish();
    QCOMPARE(SafetensorsFile::open(dir / "widen.safetensors").tensor("h").toFloats(), hf);
}

void TestSafetensors::streamingWriterContract()
{
    const fs::path dir = test::scratchDir("contract");
    const float v[4] = {1, 2, 3, 4};
    {
        SafetensorsWriter w(dir / "order.safetensors", {{"first", DType::F32, {2}}, {"second", DType::F32, {2}}});
        QVERIFY_THROWS_EXCEPTION(Error, w.writeNext("second", v, 2)); // out of declaration order
        QVERIFY_THROWS_EXCEPTION(Error, w.writeNext("first", v, 3));  // wrong element count
        w.writeNext("first", v, 2);
        QVERIFY_THROWS_EXCEPTION(Error, w.finish()); // "second" never written
    }
    // Nothing appears under the destination name unless finish() succeeded.
    QVERIFY(!fs::exists(dir / "order.safetensors"));
    {
        SafetensorsWriter w(dir / "ok.safetensors", {{"first", DType::F32, {2}}, {"second", DType::F32, {2}}});
        w.writeNext("first", v, 2);
        QVERIFY(!fs::exists(dir / "ok.safetensors"));
        w.writeNext("second", v + 2, 2);
        QVERIFY_THROWS_EXCEPTION(Error, w.writeNext("third", v, 2));
        w.finish();
    }
    QVERIFY(fs::exists(dir / "ok.safetensors"));
    QCOMPARE(SafetensorsFile::open(dir / "ok.safetensors").tensor("second").toFloats(), std::vector<float>({3, 4}));
    // Only the destination file exists: no leftover staging files.
    int entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir))
        ++entries;
    QCOMPARE(entries, 1);
}

void TestSafetensors::malformedHeaders_data()
{
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expected");

    auto add = [](const char* name, const std::vector<std::uint8_t>& bytes, const char* expected) {
        QTest::newRow(name) << QByteArray(reinterpret_cast<const char*>(bytes.data()), static_cast<qsizetype>(bytes.size()))
                            << QString(expected);
    };
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
    add("empty file", {}, "too short");
    add("seven bytes", {1, 0, 0, 0, 0, 0, 0}, "too short");
    add("length only", rawFile("", 0, 0), "not valid JSON");
    add("length beyond file", rawFile(ok, 16, ok.size() + 17), "beyond the end of the file");
    add("length 2^63", rawFile(ok, 16, 1ull << 63), "beyond the end of the file");
    add("length 2^64-1", rawFile(ok, 16, ~0ull), "beyond the end of the file");
    add("bad JSON", rawFile(R"({"t":{"dtype":"F32",)", 16), "not valid JSON");
    add("binary garbage", rawFile(std::string("\xff\xfe\x00\x01", 4), 0), "not valid JSON");
    add("JSON array", rawFile("[1,2,3]", 0), "not a JSON object");
    add("entry not object", rawFile(R"({"t":5})", 0), "entry is not an object");
    add("unknown dtype", rawFile(R"({"t":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4), "unsupported dtype I8 in tensor 't'");
    add("quantised dtype", rawFile(R"({"t":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4), "unsupported dtype F8_E4M3");
    add("missing dtype", rawFile(R"({"t":{"shape":[4],"data_offsets":[0,16]}})", 16), "missing dtype");
    add("dtype not string", rawFile(R"({"t":{"dtype":1,"shape":[4],"data_offsets":[0,16]}})", 16), "missing dtype");
    add("missing shape", rawFile(R"({"t":{"dtype":"F32","data_offsets":[0,16]}})", 16), "missing shape");
    add("negative dim", rawFile(R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16), "non-negative integers");
    add("fractional dim", rawFile(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", 16), "non-negative integers");
    add("too many dims", rawFile(R"({"t":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4), "9 dimensions");
    add("shape overflow", rawFile(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16), "overflow");
    add("shape implausible", rawFile(R"({"t":{"dtype":"F32","shape":[1099511627777],"data_offsets":[0,16]}})", 16), "implausibly large");
    add("offsets missing", rawFile(R"({"t":{"dtype":"F32","shape":[4]}})", 16), "data_offsets must be two non-negative integers");
    add("offsets one value", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", 16), "data_offsets must be two");
    add("offsets negative", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})", 16), "data_offsets must be two");
    add("offsets reversed", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", 16), "end before they begin");
    add("offsets beyond data", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16), "beyond the data section");
    add("offsets far beyond", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}})", 16), "beyond the data section");
    add("bytes smaller than shape", rawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16), "holds 12 bytes but shape [4] of F32 needs 16");
    add("bytes larger than shape", rawFile(R"({"t":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16), "holds 16 bytes but shape [2, 2] of BF16 needs 8");
    add("overlap", rawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 16), "overlap");
    add("same range twice", rawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 16), "overlap");
    add("metadata not object", rawFile(R"({"__metadata__":[1]})", 0), "__metadata__ is not an object");
    add("metadata value not string", rawFile(R"({"__metadata__":{"format":1}})", 0), "__metadata__ value 'format' is not a string");
}

void TestSafetensors::malformedHeaders()
{
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expected);
    const std::vector<std::uint8_t> v(bytes.begin(), bytes.end());
    const std::string message = safetensorsParseError(v, "/some/dir/case.safetensors");
    QVERIFY2(!message.empty(), "malformed header was accepted");
    // One line, starting with the file, naming the problem.
    QVERIFY2(message.rfind("/some/dir/case.safetensors: ", 0) == 0, message.c_str());
    QVERIFY2(message.find('\n') == std::string::npos, message.c_str());
    QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());

    // The same bytes as a file: the same error, naming that file.
    const fs::path file = test::scratchDir("malformed") / "case.safetensors";
    writeBytes(file, v);
    const std::string fromFile = openError(file);
    QVERIFY2(fromFile.rfind(file.string() + ": ", 0) == 0, fromFile.c_str());
    QVERIFY2(fromFile.find(expected.toStdString()) != std::string::npos, fromFile.c_str());

    // Handed only the header part (as a reader that maps the header first would), it still fails cleanly.
    if (v.size() > 8) {
        const std::size_t available = std::min<std::size_t>(v.size(), 12);
        bool threw = false;
        try {
            parseSafetensorsHeader(v.data(), available, v.size(), "partial");
        } catch (const Error&) {
            threw = true;
        }
        QVERIFY(threw);
    }
}

void TestSafetensors::malformedFiles()
{
    const fs::path dir = test::scratchDir("files");
    QVERIFY(openError(dir / "absent.safetensors").find("absent.safetensors: cannot open") != std::string::npos);
    QVERIFY(openError(dir).find("not a regular file") != std::string::npos);
    writeBytes(dir / "empty.safetensors", {});
    QVERIFY(openError(dir / "empty.safetensors").find("too short") != std::string::npos);

    // A valid header with extra bytes after the data is accepted (Hugging Face pads too); valid ones parse.
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
    writeBytes(dir / "ok.safetensors", rawFile(ok, 16));
    QCOMPARE(openError(dir / "ok.safetensors"), std::string());
    // Zero-sized tensors may share an offset with another tensor without overlapping.
    writeBytes(dir / "zero.safetensors",
               rawFile(R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
    QCOMPARE(openError(dir / "zero.safetensors"), std::string());
}

void TestSafetensors::truncationAtEveryOffset()
{
    const fs::path dir = test::scratchDir("truncate");
    std::vector<float> values(40);
    for (std::size_t i = 0; i < values.size(); ++i)
        values[i] = static_cast<float>(i);
    writeSafetensors(dir / "full.safetensors", {{"a", Tensor::fromFloats(DType::F32, {4, 5}, values.data())},
                                                {"b", Tensor::fromFloats(DType::BF16, {20}, values.data() + 20)}});
    const auto full = fileBytes(dir / "full.safetensors");
    QCOMPARE(safetensorsParseError(full), std::string());
    // Every proper prefix of the file is rejected with an Error: the last tensor always ends at the end of the file.
    for (std::size_t n = 0; n < full.size(); ++n) {
        const std::vector<std::uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        const std::string message = safetensorsParseError(prefix);
        QVERIFY2(!message.empty(), qPrintable(QString("prefix of %1 bytes accepted").arg(n)));
    }
    // The same through files at a spread of offsets.
    for (std::size_t n : {std::size_t(0), std::size_t(4), std::size_t(8), std::size_t(20), full.size() / 2, full.size() - 1}) {
        writeBytes(dir / "cut.safetensors", std::vector<std::uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)));
        const std::string message = openError(dir / "cut.safetensors");
        QVERIFY2(message.rfind((dir / "cut.safetensors").string() + ": ", 0) == 0, message.c_str());
    }
}

void TestSafetensors::hugeLengthsNeverAllocate()
{
    // A file claiming a 50 MiB header but holding 64 bytes must fail on the length check, before any allocation of
    // that size; and a header length within the file but above the sane bound is refused too.
    std::vector<std::uint8_t> small = rawFile("{}", 62, 50ull << 20);
    QVERIFY(safetensorsParseError(small).find("beyond the end of the file") != std::string::npos);
    // With fileSize lying about a huge file but only a few bytes available, the reader bounds-checks what it reads.
    std::vector<std::uint8_t> v = rawFile("{}", 0, 200ull << 20);
    bool threw = false;
    try {
        parseSafetensorsHeader(v.data(), v.size(), (200ull << 20) + 8, "huge");
    } catch (const Error& e) {
        threw = true;
        QVERIFY2(std::string(e.what()).find("implausibly large") != std::string::npos, e.what());
    }
    QVERIFY(threw);
    threw = false;
    v = rawFile("{}", 0, 1000);
    try {
        parseSafetensorsHeader(v.data(), v.size(), 2000, "partial");
    } catch (const Error& e) {
        threw = true;
        QVERIFY2(std::string(e.what()).find("truncated") != std::string::npos, e.what());
    }
    QVERIFY(threw);
}

void TestSafetensors::shardedCollection()
{
    const fs::path dir = test::scratchDir("sharded");
    const float a[3] = {1, 2, 3};
    const float b[2] = {4, 5};
    writeSafetensors(dir / "part-1.safetensors", {{"x.a", Tensor::fromFloats(DType::F32, {3}, a)}});
    writeSafetensors(dir / "part-2.safetensors", {{"x.b", Tensor::fromFloats(DType::F16, {2}, b)}});
    test::writeTextFile(dir / "model.safetensors.index.json",
                        R"({"metadata":{"total_size":16},"weight_map":{"x.a":"part-1.safetensors","x.b":"part-2.safetensors"}})");
    for (const fs::path& p : {dir, dir / "model.safetensors.index.json"}) {
        const auto c = SafetensorsCollection::open(p);
        QCOMPARE(c.files().size(), std::size_t(2));
        QCOMPARE(c.names(), std::vector<std::string>({"x.a", "x.b"}));
        QCOMPARE(c.tensor("x.a").toFloats(), std::vector<float>({1, 2, 3}));
        QCOMPARE(c.tensor("x.b").toFloats(), std::vector<float>({4, 5}));
        QCOMPARE(c.totalBytes(), std::uint64_t(16));
        QVERIFY_THROWS_EXCEPTION(Error, c.tensor("x.c"));
    }
}

void TestSafetensors::malformedIndex()
{
    const fs::path dir = test::scratchDir("badindex");
    const float a[3] = {1, 2, 3};
    writeSafetensors(dir / "part-1.safetensors", {{"x.a", Tensor::fromFloats(DType::F32, {3}, a)}});
    const fs::path index = dir / "model.safetensors.index.json";
    struct Case {
        const char* json;
        const char* expected;
    };
    const Case cases[] = {
        {"{not json", "invalid JSON"},
        {"[1]", "missing 'weight_map' object"},
        {R"({"metadata":{}})", "missing 'weight_map' object"},
        {R"({"weight_map":[]})", "missing 'weight_map' object"},
        {R"({"weight_map":{"x.a":3}})", "is not a file name"},
        {R"({"weight_map":{"x.a":"../part-1.safetensors"}})", "not a file in this folder"},
        {R"({"weight_map":{"x.a":"sub/part-1.safetensors"}})", "not a file in this folder"},
        {R"({"weight_map":{"x.a":""}})", "not a file in this folder"},
        {R"({"weight_map":{"x.a":"absent.safetensors"}})", "absent.safetensors: cannot open"},
        {R"({"weight_map":{"x.b":"part-1.safetensors"}})", "does not hold it"},
    };
    for (const Case& c : cases) {
        test::writeTextFile(index, c.json);
        const std::string message = collectionError(dir);
        QVERIFY2(message.find(c.expected) != std::string::npos, (std::string(c.json) + " -> " + message).c_str());
        QVERIFY2(message.find(dir.string()) == 0, message.c_str());
    }
    fs::remove(index);
    QVERIFY(collectionError(dir).find("no model.safetensors or model.safetensors.index.json") != std::string::npos);
    // A shard that is itself malformed is reported with the shard's name.
    writeBytes(dir / "part-2.safetensors", rawFile("{bad", 0));
    test::writeTextFile(index, R"({"weight_map":{"x.a":"part-1.safetensors","x.b":"part-2.safetensors"}})");
    const std::string message = collectionError(dir);
    QVERIFY2(message.find((dir / "part-2.safetensors").string() + ": header is not valid JSON") == 0, message.c_str());
}

void TestSafetensors::realCheckpointParses()
{
    const fs::path file = test::modelsDir() / "stories260K-hf" / "model.safetensors";
    const SafetensorsFile f = SafetensorsFile::open(file);
    QVERIFY(f.contains("model.embed_tokens.weight"));
    QCOMPARE(f.tensor("model.embed_tokens.weight").shape(), std::vector<std::int64_t>({512, 64}));
    QCOMPARE(f.tensor("model.layers.0.self_attn.k_proj.weight").shape(), std::vector<std::int64_t>({32, 64}));
    // 1 embedding + 5 x 9 per layer + final norm; tied, so no lm_head.
    QCOMPARE(f.names().size(), std::size_t(1 + 5 * 9 + 1));
    // The data section exactly covers the tensors.
    QCOMPARE(f.header().dataStart + SafetensorsCollection::open(file).totalBytes(), fs::file_size(file));
}

QTEST_GUILESS_MAIN(TestSafetensors)
#include "tst_safetensors.moc"
