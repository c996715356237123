// The GGUF writer against the reader and against the format itself: a hand-assembled byte image of a small file
// (header, metadata, tensor record, alignment padding, data) equals what the writer produces byte for byte; every
// metadata type and every written float type round-trips through the reader bit for bit at two alignments; a
// file is staged (nothing under the name until finish, nothing left on failure); misuse is refused.
#include "common/expect_error.h"
#include "common/test_support.h"

#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "util/error.h"
#include "util/half.h"

#include <cmath>
#include <cstring>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

using mla::test::put;

using mla::test::putString;

using mla::test::fileBytes;

std::vector<float> randomValues(std::size_t n, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v)
        x = normal(rng);
    return v;
}

using test::expectError;

} // namespace

class TestGgufWriter : public QObject {
    Q_OBJECT
private slots:
    void matchesHandAssembledBytes();
    void metadataRoundTrip();
    void tensorsRoundTrip_data();
    void tensorsRoundTrip();
    void rowSourceEqualsWholeTensor();
    void stagedUntilFinished();
    void misuseIsRefused();
};

void TestGgufWriter::matchesHandAssembledBytes()
{
    // The GGUF v3 layout written out by hand from the format's definition (ggml's docs/gguf.md): magic, version,
    // tensor count, metadata count, key/type/value, tensor name/dims/type/offset, zero padding to the alignment,
    // data, zero padding after each tensor.
    std::vector<std::uint8_t> expected = {'G', 'G', 'U', 'F'};
    put<std::uint32_t>(expected, 3);
    put<std::uint64_t>(expected, 1);
    put<std::uint64_t>(expected, 2);
    putString(expected, "general.architecture");
    put<std::uint32_t>(expected, 8);
    putString(expected, "llama");
    putString(expected, "x.numbers");
    put<std::uint32_t>(expected, 9);
    put<std::uint32_t>(expected, 5);
    put<std::uint64_t>(expected, 2);
    put<std::int32_t>(expected, -7);
    put<std::int32_t>(expected, 9);
    putString(expected, "w");
    put<std::uint32_t>(expected, 2);
    put<std::uint64_t>(expected, 3);
    put<std::uint64_t>(expected, 2);
    put<std::uint32_t>(expected, 0);
    put<std::uint64_t>(expected, 0);
    expected.resize((expected.size() + 31) / 32 * 32, 0);
    const float values[6] = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f, 8.0f};
    for (float v : values)
        put(expected, v);
    expected.resize((expected.size() + 31) / 32 * 32, 0);

    const fs::path file = test::scratchDir("bytes") / "tiny.gguf";
    GgufWriter w(file);
    w.setMetadata("general.architecture", ggufString("llama"));
    w.setMetadata("x.numbers", ggufI32Array({-7, 9}));
    w.declareTensor({"w", GgmlType::F32, {3, 2}});
    w.writeTensor("w", values, 6);
    w.finish();
    QCOMPARE(fileBytes(file), expected);
}

void TestGgufWriter::metadataRoundTrip()
{
    const fs::path file = test::scratchDir("metadata") / "meta.gguf";
    GgufWriter w(file);
    const std::string utf8 = "caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\xA6\x99";
    w.setMetadata("s", ggufString(utf8));
    w.setMetadata("empty", ggufString(""));
    w.setMetadata("u32", ggufU32(4294967295u));
    w.setMetadata("i32", ggufI32(-2147483647 - 1));
    w.setMetadata("u64", ggufU64(1ull << 40));
    w.setMetadata("f32", ggufF32(1e-5f));
    w.setMetadata("yes", ggufBool(true));
    w.setMetadata("no", ggufBool(false));
    w.setMetadata("strings", ggufStringArray({"a", "", utf8, std::string("nul\0inside", 10)}));
    w.setMetadata("floats", ggufF32Array({-1000.0f, 0.0f, 3.4028235e38f, 1.17549435e-38f}));
    w.setMetadata("ints", ggufI32Array({1, 2, 3, 6, -1}));
    w.finish();

    const GgufFile g = GgufFile::open(file);
    QCOMPARE(g.version(), 3u);
    QCOMPARE(g.metadata().size(), std::size_t(11));
    QCOMPARE(g.find("s")->string, utf8);
    QCOMPARE(g.find("empty")->string, std::string());
    QCOMPARE(g.find("u32")->integer, std::int64_t(4294967295u));
    QCOMPARE(g.find("i32")->integer, std::int64_t(-2147483647 - 1));
    QCOMPARE(g.find("u64")->type, GgufValueType::U64);
    QCOMPARE(g.find("u64")->integer, std::int64_t(1) << 40);
    QCOMPARE(static_cast<float>(g.find("f32")->number), 1e-5f);
    QCOMPARE(g.find("yes")->boolean, true);
    QCOMPARE(g.find("no")->boolean, false);
    const auto& strings = g.find("strings")->strings;
    QCOMPARE(strings.size(), std::size_t(4));
    QCOMPARE(strings[2], utf8);
    QCOMPARE(strings[3], std::string("nul\0inside", 10));
    const auto& floats = g.find("floats")->numbers;
    QCOMPARE(static_cast<float>(floats[2]), 3.4028235e38f);
    QCOMPARE(static_cast<float>(floats[3]), 1.17549435e-38f);
    QCOMPARE(g.find("ints")->arrayType, GgufValueType::I32);
    QCOMPARE(g.find("ints")->numbers.back(), -1.0);
    QVERIFY(g.tensors().empty());
}

void TestGgufWriter::tensorsRoundTrip_data()
{
    QTest::addColumn<int>("alignment");
    QTest::newRow("default 32") << 32;
    QTest::newRow("64") << 64;
}

void TestGgufWriter::tensorsRoundTrip()
{
    QFETCH(int, alignment);
    const fs::path file = test::scratchDir("tensors") / "t.gguf";
    struct Case {
        std::string name;
        GgmlType type;
        std::vector<std::uint64_t> dims;
    };
    // Odd sizes so that every tensor's end needs padding.
    const std::vector<Case> cases = {{"a.f32", GgmlType::F32, {7, 3}},
                                     {"b.f16", GgmlType::F16, {5, 3, 2}},
                                     {"c.bf16", GgmlType::BF16, {13}},
                                     {"d.f32", GgmlType::F32, {1, 1, 1, 1}}};
    GgufWriter w(file, static_cast<std::uint32_t>(alignment));
    w.setMetadata("general.architecture", ggufString("test"));
    std::vector<std::vector<float>> data;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        w.declareTensor({cases[i].name, cases[i].type, cases[i].dims});
        std::uint64_t n = 1;
        for (auto d : cases[i].dims)
            n *= d;
        data.push_back(randomValues(n, static_cast<std::uint32_t>(i + 1)));
    }
    for (std::size_t i = 0; i < cases.size(); ++i)
        w.writeTensor(cases[i].name, data[i].data(), data[i].size());
    w.finish();

    const GgufFile g = GgufFile::open(file);
    QCOMPARE(g.tensors().size(), cases.size());
    if (alignment != 32)
        QCOMPARE(g.find("general.alignment")->integer, std::int64_t(alignment));
    else
        QVERIFY(!g.find("general.alignment"));
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const GgufTensorInfo& info = g.tensors()[i];
        QCOMPARE(info.name, cases[i].name);
        QCOMPARE(info.dims, cases[i].dims);
        QCOMPARE(info.offset % static_cast<std::uint64_t>(alignment), std::uint64_t(0));
        const Tensor t = *g.tensor(cases[i].name);
        // Bit for bit: the stored bytes are exactly the written values encoded by round to nearest even.
        const DType dtype = cases[i].type == GgmlType::F32 ? DType::F32 : cases[i].type == GgmlType::F16 ? DType::F16 : DType::BF16;
        QCOMPARE(t.dtype(), dtype);
        const Tensor expected = Tensor::fromFloats(dtype, t.shape(), data[i].data());
        QCOMPARE(t.bytes(), expected.bytes());
        QVERIFY(std::memcmp(t.data(), expected.data(), t.bytes()) == 0);
        if (cases[i].type == GgmlType::F16) {
            std::uint16_t h;
            std::memcpy(&h, t.data(), 2);
            QCOMPARE(h, floatToF16(data[i][0]));
        }
    }
    // The data section ends on the alignment, as llama.cpp's writer leaves it.
    QCOMPARE(fs::file_size(file) % static_cast<std::uint64_t>(alignment), std::uintmax_t(0));
}

void TestGgufWriter::rowSourceEqualsWholeTensor()
{
    const fs::path dir = test::scratchDir("rows");
    const auto values = randomValues(64 * 5, 7);
    for (const GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        const std::string name = std::string(ggmlTypeTraits(type).userName);
        GgufWriter whole(dir / (name + "-whole.gguf"));
        whole.declareTensor({"w", type, {64, 5}});
        whole.writeTensor("w", values.data(), values.size());
        whole.finish();
        GgufWriter rows(dir / (name + "-rows.gguf"));
        rows.declareTensor({"w", type, {64, 5}});
        rows.writeTensorRows("w", [&](std::uint64_t r, float* out) { std::memcpy(out, values.data() + r * 64, 64 * sizeof(float)); });
        rows.finish();
        QCOMPARE(fileBytes(dir / (name + "-rows.gguf")), fileBytes(dir / (name + "-whole.gguf")));
        // The quantised data sits at the aligned data offset, as ggml's row encoder lays it out.
        const auto bytes = fileBytes(dir / (name + "-whole.gguf"));
        const std::uint64_t rowBytes = ggmlRowBytes(type, 64);
        std::vector<std::uint8_t> encoded(rowBytes);
        encodeGgmlRow(type, values.data() + 64 * 3, encoded.data(), 64);
        const std::size_t dataStart = bytes.size() - (5 * rowBytes + 31) / 32 * 32;
        QVERIFY(std::equal(encoded.begin(), encoded.end(), bytes.begin() + static_cast<std::ptrdiff_t>(dataStart + 3 * rowBytes)));
    }
}

void TestGgufWriter::stagedUntilFinished()
{
    const fs::path dir = test::scratchDir("staged");
    const fs::path file = dir / "m.gguf";
    const std::vector<float> v(32, 1.0f);
    {
        GgufWriter w(file);
        w.declareTensor({"a", GgmlType::F32, {32}});
        w.declareTensor({"b", GgmlType::F32, {32}});
        w.writeTensor("a", v.data(), v.size());
        QVERIFY(!fs::exists(file)); // written so far only under a temporary name
    } // abandoned: the temporary goes
    QVERIFY(!fs::exists(file));
    QCOMPARE(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), std::ptrdiff_t(0));

    test::writeTextFile(file, "old contents");
    // Not a GGUF file this tool wrote: refused unless forced (util/output_safety.h), then replaced only at finish.
    expectError([&] { GgufWriter refused(file); }, "is not a GGUF file written by MLA Workbench");
    GgufWriter w(file, 32, OutputOptions{true, {}});
    w.declareTensor({"a", GgmlType::F32, {32}});
    w.writeTensor("a", v.data(), v.size());
    QCOMPARE(test::readTextFile(file), std::string("old contents")); // replaced only at finish
    w.finish();
    QCOMPARE(GgufFile::open(file).tensors().size(), std::size_t(1));
}

void TestGgufWriter::misuseIsRefused()
{
    const fs::path dir = test::scratchDir("misuse");
    const std::vector<float> v(64, 0.5f);
    {
        GgufWriter w(dir / "a.gguf");
        w.setMetadata("k", ggufU32(1));
        expectError([&] { w.setMetadata("k", ggufU32(2)); }, "set twice");
        expectError([&] { w.declareTensor({std::string(64, 'x'), GgmlType::F32, {1}}); }, "1 to 63 bytes");
        expectError([&] { w.declareTensor({"five", GgmlType::F32, {1, 1, 1, 1, 1}}); }, "5 dimensions");
        expectError([&] { w.declareTensor({"q", GgmlType::Q8_0, {48, 2}}); }, "not whole Q8_0 blocks");
        w.declareTensor({"first", GgmlType::F32, {64}});
        w.declareTensor({"second", GgmlType::F32, {64}});
        expectError([&] { w.declareTensor({"first", GgmlType::F32, {64}}); }, "declared twice");
        expectError([&] { w.writeTensor("second", v.data(), v.size()); }, "out of declaration order");
        expectError([&] { w.writeTensor("first", v.data(), 63); }, "given 63");
        w.writeTensor("first", v.data(), v.size());
        expectError([&] { w.setMetadata("late", ggufU32(1)); }, "after tensor data");
        expectError([&] { w.finish(); }, "1 declared tensors were not written");
    }
    QVERIFY(!fs::exists(dir / "a.gguf"));
    expectError([&] { GgufWriter(dir / "b.gguf", 24); }, "not a power of two");
}

QTEST_GUILESS_MAIN(TestGgufWriter)
#include "tst_gguf_writer.moc"
