// The deepseek2 tensor layout helpers against llama.cpp's converter (conversion/deepseek.py of the pinned build):
//   kv_b = kv_b_proj.view(heads, nope + value, kv_lora); k_b, v_b = split(kv_b, [nope, value], dim=1);
//   k_b = k_b.transpose(1, 2)   ->  attn_k_b [heads, kv_lora, nope], attn_v_b [heads, value, kv_lora]
// written out element by element here; the reader's merge is the exact inverse; and the rope-part reordering
// between the half layout (pair i = dims (i, i + r/2)) and llama.cpp's interleaved one (pair i = dims (2i, 2i+1)).
#include "common/test_support.h"

#include "formats/gguf_deepseek2.h"
#include "util/error.h"

using namespace mla;

class TestGgufDeepseek2Layout : public QObject {
    Q_OBJECT
private slots:
    void splitsKvBAsLlamaCppsConverter();
    void mergeInvertsSplit();
    void ropeRowOrder();
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

QTEST_GUILESS_MAIN(TestGgufDeepseek2Layout)
#include "tst_gguf_deepseek2_layout.moc"
