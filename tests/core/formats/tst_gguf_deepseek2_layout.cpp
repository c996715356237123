// The deepseek2 layout against llama.cpp's converter (conversion/deepseek.py of the pinned build) and loader
// (llama_model_deepseek2::load_arch_hparams). Hyperparameters of files written by llama.cpp's own gguf-py
// (tests/data/gguf, make_deepseek2_fixtures.py): dense, lite (26 blocks, no q_lora_rank), q-lora, legacy; and copies
// with one key changed, each refused with the key named. Tensor helpers:
//   kv_b = kv_b_proj.view(heads, nope + value, kv_lora); k_b, v_b = split(kv_b, [nope, value], dim=1);
//   k_b = k_b.transpose(1, 2)   ->  attn_k_b [heads, kv_lora, nope], attn_v_b [heads, value, kv_lora]
// written out element by element here; the reader's merge is the exact inverse; and the rope-part reordering
// between the half layout (pair i = dims (i, i + r/2)) and llama.cpp's interleaved one (pair i = dims (2i, 2i+1)).
#include "common/test_support.h"

#include "formats/gguf.h"
#include "formats/gguf_deepseek2.h"
#include "formats/gguf_writer.h"
#include "util/error.h"

#include <functional>

using namespace mla;

class TestGgufDeepseek2Layout : public QObject {
    Q_OBJECT
private slots:
    void splitsKvBAsLlamaCppsConverter();
    void mergeInvertsSplit();
    void ropeRowOrder();
    void fixtureHyperparameters_data();
    void fixtureHyperparameters();
    void contradictoryKeysRefused_data();
    void contradictoryKeysRefused();
};

namespace {

const DeepSeek2Widths kWidths{3, 2, 4, 5, 6}; // heads, nope, rope, value, kvLora

Tensor numberedKvB()
{
    const std::int64_t rows = kWidths.heads * (kWidths.nope + kWidths.value);
    std::vector<float> v(static_cast<std::size_t>(rows * kWidths.kvLora));
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < kWidths.kvLora; ++c)
            v[static_cast<std::size_t>(r * kWidths.kvLora + c)] = static_cast<float>(1000 * r + c);
    return Tensor::fromFloats(DType::F32, {rows, kWidths.kvLora}, v.data());
}

std::filesystem::path fixture(const std::string& name)
{
    return test::sourceDir() / "data" / "gguf" / (name + ".gguf");
}

DeepSeek2Hyperparameters hyperparametersOf(const GgufFile& g)
{
    auto integer = [&](const char* key) { return g.find(std::string("deepseek2.") + key)->integer; };
    return readDeepSeek2Hyperparameters(g, integer("embedding_length"), integer("attention.head_count"),
                                        integer("block_count"), integer("vocab_size"));
}

using Metadata = std::vector<std::pair<std::string, GgufValue>>;

// A copy of a GGUF file with its metadata changed by `edit`, written with our writer (tensors copied as they are).
std::filesystem::path rewritten(const std::filesystem::path& source, const std::string& name,
                                const std::function<void(Metadata&)>& edit)
{
    const GgufFile g = GgufFile::open(source);
    Metadata metadata(g.metadata().begin(), g.metadata().end());
    edit(metadata);
    const auto out = test::scratchDir("rewritten-" + name) / "model.gguf";
    GgufWriter w(out);
    for (auto& [key, value] : metadata)
        w.setMetadata(key, value);
    for (const auto& t : g.tensors())
        w.declareTensor({t.name, GgmlType::F32, t.dims});
    for (const auto& t : g.tensors()) {
        const Tensor data = *g.tensor(t.name);
        w.writeTensorBytes(t.name, data.data(), data.bytes());
    }
    w.finish();
    return out;
}

void setKey(Metadata& m, const std::string& key, GgufValue value)
{
    for (auto& [k, v] : m) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    m.emplace_back(key, std::move(value));
}

void removeKey(Metadata& m, const std::string& key)
{
    std::erase_if(m, [&](const auto& kv) { return kv.first == key; });
}

} // namespace

void TestGgufDeepseek2Layout::splitsKvBAsLlamaCppsConverter()
{
    const Tensor kvB = numberedKvB();
    DeepSeek2KvBSplitter split(kvB, kWidths);
    const auto& w = kWidths;
    std::vector<float> row(static_cast<std::size_t>(std::max(w.nope, w.kvLora)));
    for (std::int64_t h = 0; h < w.heads; ++h) {
        for (std::int64_t j = 0; j < w.kvLora; ++j) {
            split.kBRow(static_cast<std::uint64_t>(h * w.kvLora + j), row.data());
            for (std::int64_t i = 0; i < w.nope; ++i) // k_b[h][j][i] = kv_b[h][i][j]
                QCOMPARE(row[static_cast<std::size_t>(i)], static_cast<float>(1000 * (h * (w.nope + w.value) + i) + j));
        }
        for (std::int64_t r = 0; r < w.value; ++r) {
            split.vBRow(static_cast<std::uint64_t>(h * w.value + r), row.data());
            for (std::int64_t j = 0; j < w.kvLora; ++j) // v_b[h][r][j] = kv_b[h][nope + r][j]
                QCOMPARE(row[static_cast<std::size_t>(j)], static_cast<float>(1000 * (h * (w.nope + w.value) + w.nope + r) + j));
        }
    }
}

void TestGgufDeepseek2Layout::mergeInvertsSplit()
{
    const Tensor kvB = numberedKvB();
    const auto& w = kWidths;
    DeepSeek2KvBSplitter split(kvB, w);
    std::vector<float> k(static_cast<std::size_t>(w.heads * w.kvLora * w.nope));
    std::vector<float> v(static_cast<std::size_t>(w.heads * w.value * w.kvLora));
    for (std::int64_t r = 0; r < w.heads * w.kvLora; ++r)
        split.kBRow(static_cast<std::uint64_t>(r), k.data() + r * w.nope);
    for (std::int64_t r = 0; r < w.heads * w.value; ++r)
        split.vBRow(static_cast<std::uint64_t>(r), v.data() + r * w.kvLora);
    const Tensor merged = deepSeek2KvB(Tensor::fromFloats(DType::F32, {w.heads, w.kvLora, w.nope}, k.data()),
                                       Tensor::fromFloats(DType::F32, {w.heads, w.value, w.kvLora}, v.data()), w);
    QCOMPARE(merged.shape(), kvB.shape());
    QVERIFY(merged.toFloats() == kvB.toFloats());
    QVERIFY_THROWS_EXCEPTION(Error, DeepSeek2KvBSplitter(Tensor::fromFloats(DType::F32, {2, 6}, k.data()), w));
}

void TestGgufDeepseek2Layout::ropeRowOrder()
{
    // A block of 2 nope rows then 4 rope rows in the half layout: r0 r1 | a0 a1 b0 b1, where (a_i, b_i) is pair i.
    // Interleaved, the rope part reads a0 b0 a1 b1.
    const std::int64_t width = 6;
    const std::int64_t rope = 4;
    const std::vector<std::int64_t> expected{0, 1, 2, 4, 3, 5, 6, 7, 8, 10, 9, 11}; // two blocks
    for (std::int64_t row = 0; row < 12; ++row) {
        QCOMPARE(deepSeek2InterleavedRopeRow(row, width, rope), expected[static_cast<std::size_t>(row)]);
        QCOMPARE(deepSeek2HalfRopeRow(deepSeek2InterleavedRopeRow(row, width, rope), width, rope), row);
        QCOMPARE(deepSeek2InterleavedRopeRow(deepSeek2HalfRopeRow(row, width, rope), width, rope), row);
    }
}

void TestGgufDeepseek2Layout::fixtureHyperparameters_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("qLora");
    QTest::addColumn<bool>("absorbed");
    QTest::addColumn<bool>("lite");
    QTest::newRow("dense") << "deepseek2_dense" << 0 << true << false;
    QTest::newRow("lite") << "deepseek2_lite" << 0 << true << true;
    QTest::newRow("q-lora") << "deepseek2_qlora" << 12 << true << false;
    QTest::newRow("legacy") << "deepseek2_legacy" << 0 << false << false;
}

void TestGgufDeepseek2Layout::fixtureHyperparameters()
{
    QFETCH(QString, name);
    QFETCH(int, qLora);
    QFETCH(bool, absorbed);
    QFETCH(bool, lite);
    const GgufFile g = GgufFile::open(fixture(name.toStdString()));
    const DeepSeek2Hyperparameters h = hyperparametersOf(g);
    // make_deepseek2_fixtures.py: heads 2, nope 8, rope 4, value 8, kv_lora 8.
    QCOMPARE(h.widths.heads, std::int64_t(2));
    QCOMPARE(h.widths.nope, std::int64_t(8));
    QCOMPARE(h.widths.rope, std::int64_t(4));
    QCOMPARE(h.widths.value, std::int64_t(8));
    QCOMPARE(h.widths.kvLora, std::int64_t(8));
    QCOMPARE(h.qLoraRank, std::int64_t(qLora));
    QCOMPARE(h.absorbed, absorbed);
    QCOMPARE(h.lite, lite);
    QVERIFY(!h.yarn);
}

void TestGgufDeepseek2Layout::contradictoryKeysRefused_data()
{
    QTest::addColumn<QString>("label");
    QTest::addColumn<QString>("expected");
    QTest::newRow("key_length") << "key_length" << "deepseek2.attention.key_length 99 contradicts deepseek2.attention.kv_lora_rank 8";
    QTest::newRow("value_length") << "value_length" << "deepseek2.attention.value_length 5 contradicts";
    QTest::newRow("kv_lora_rank > hidden") << "kv_lora_rank" << "deepseek2.attention.kv_lora_rank 100 is larger than the hidden size 32";
    QTest::newRow("head_count_kv") << "head_count_kv" << "deepseek2.attention.head_count_kv 2 contradicts absorbed MLA";
    QTest::newRow("no q_lora_rank") << "q_lora_rank" << "missing metadata deepseek2.attention.q_lora_rank";
    QTest::newRow("experts") << "expert_count" << "deepseek2.expert_count 4: mixture-of-experts";
    QTest::newRow("moe blocks") << "leading_dense" << "blocks 1 to 1 use expert feed-forward layers";
    QTest::newRow("no dense count") << "no_leading_dense" << "missing metadata deepseek2.leading_dense_block_count";
    QTest::newRow("rope scaling") << "linear" << "rope.scaling.type 'linear' is not supported for deepseek2";
    QTest::newRow("rope width") << "rope_odd" << "rope.dimension_count 3 must be positive and even";
    QTest::newRow("no nope") << "key_length_mla" << "key_length_mla 4 leaves no position-free key dims";
    QTest::newRow("half mla") << "value_length_mla" << "deepseek2.attention.value_length_mla is missing while its partner";
}

void TestGgufDeepseek2Layout::contradictoryKeysRefused()
{
    QFETCH(QString, label);
    QFETCH(QString, expected);
    const std::string l = label.toStdString();
    const auto file = rewritten(fixture("deepseek2_dense"), l, [&](Metadata& m) {
        const std::string p = "deepseek2.";
        if (l == "key_length") setKey(m, p + "attention.key_length", ggufU32(99));
        if (l == "value_length") setKey(m, p + "attention.value_length", ggufU32(5));
        if (l == "kv_lora_rank") setKey(m, p + "attention.kv_lora_rank", ggufU32(100));
        if (l == "head_count_kv") setKey(m, p + "attention.head_count_kv", ggufU32(2));
        if (l == "q_lora_rank") removeKey(m, p + "attention.q_lora_rank");
        if (l == "expert_count") setKey(m, p + "expert_count", ggufU32(4));
        if (l == "leading_dense") setKey(m, p + "leading_dense_block_count", ggufU32(1));
        if (l == "no_leading_dense") removeKey(m, p + "leading_dense_block_count");
        if (l == "linear") setKey(m, p + "rope.scaling.type", ggufString("linear"));
        if (l == "rope_odd") setKey(m, p + "rope.dimension_count", ggufU32(3));
        if (l == "key_length_mla") setKey(m, p + "attention.key_length_mla", ggufU32(4));
        if (l == "value_length_mla") removeKey(m, p + "attention.value_length_mla");
    });
    const GgufFile g = GgufFile::open(file);
    try {
        hyperparametersOf(g);
    } catch (const Error& e) {
        const std::string message = e.what();
        QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
        QVERIFY2(message.find(file.string()) != std::string::npos, message.c_str());
        return;
    }
    QFAIL("accepted");
}

QTEST_GUILESS_MAIN(TestGgufDeepseek2Layout)
#include "tst_gguf_deepseek2_layout.moc"
