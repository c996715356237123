// RoPE layouts: llama2.c and GGUF store query/key rows with interleaved pairs (2j, 2j+1), Hugging Face with half
// pairs (j, j + d/2); the loader normalises both into the half layout. The same model in both layouts must give
// identical logits: checked on the real GQA (stories260K) and MHA (aidreams260K) models in .bin, -hf and .gguf
// form, and on random synthetic models written here in both layouts (with a control showing that skipping the
// permutation is detected).
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "engine/transformer.h"
#include "formats/checkpoint_writer.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"

#include <cstring>
#include <fstream>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

using mla::test::logitsOf;

// A fixed pseudo-random token sequence starting with BOS.
std::vector<int> sequence(int length, int vocab, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::vector<int> ids = {1};
    while (static_cast<int>(ids.size()) < length)
        ids.push_back(3 + static_cast<int>(rng() % static_cast<std::uint32_t>(vocab - 3)));
    return ids;
}

void compareModels(const Model& a, const Model& b, const std::vector<int>& ids)
{
    QCOMPARE(a.config.hidden, b.config.hidden);
    QCOMPARE(a.config.heads, b.config.heads);
    QCOMPARE(a.config.kvHeads, b.config.kvHeads);
    QCOMPARE(a.config.headDim, b.config.headDim);
    // After normalisation the weights are the same floats, row for row.
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        QCOMPARE(a.layers[l].q.toFloats(), b.layers[l].q.toFloats());
        QCOMPARE(a.layers[l].k.toFloats(), b.layers[l].k.toFloats());
    }
    const MatrixRM la = logitsOf(a, ids);
    const MatrixRM lb = logitsOf(b, ids);
    QCOMPARE(la.rows(), static_cast<Eigen::Index>(ids.size()));
    const double diff = test::maxAbsoluteDifference(la.data(), lb.data(), static_cast<std::size_t>(la.size()));
    QVERIFY2(diff <= 1e-5, qPrintable(QString("max |difference| %1").arg(diff)));
    // In fact the same computation on the same floats: bit-identical.
    QVERIFY2(la == lb, qPrintable(QString("logits differ by up to %1").arg(diff)));
}

// Writes the llama2.c .bin of a model held in the half layout (inverse of the loader's permutation), optionally
// skipping the permutation (a deliberately wrong file).
void writeLlama2c(const fs::path& file, const Model& m, bool permute)
{
    const ModelConfig& c = m.config;
    std::vector<float> out;
    auto append = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
    auto interleave = [&](const Tensor& t, std::int64_t heads) {
        const std::vector<float> v = t.toFloats();
        if (!permute)
            return v;
        std::vector<float> r(v.size());
        const std::int64_t d = c.headDim, cols = t.cols();
        for (std::int64_t h = 0; h < heads; ++h)
            for (std::int64_t j = 0; j < d / 2; ++j) {
                std::copy_n(v.begin() + (h * d + j) * cols, cols, r.begin() + (h * d + 2 * j) * cols);
                std::copy_n(v.begin() + (h * d + d / 2 + j) * cols, cols, r.begin() + (h * d + 2 * j + 1) * cols);
            }
        return r;
    };
    append(m.embedding.toFloats());
    for (const auto& l : m.layers) append(std::vector<float>(l.attnNorm.data(), l.attnNorm.data() + l.attnNorm.size()));
    for (const auto& l : m.layers) append(interleave(l.q, c.heads));
    for (const auto& l : m.layers) append(interleave(l.k, c.kvHeads));
    for (const auto& l : m.layers) append(l.v.toFloats());
    for (const auto& l : m.layers) append(l.o.toFloats());
    for (const auto& l : m.layers) append(std::vector<float>(l.ffnNorm.data(), l.ffnNorm.data() + l.ffnNorm.size()));
    for (const auto& l : m.layers) append(l.gate.toFloats());
    for (const auto& l : m.layers) append(l.down.toFloats());
    for (const auto& l : m.layers) append(l.up.toFloats());
    append(std::vector<float>(m.outputNorm.data(), m.outputNorm.data() + m.outputNorm.size()));
    out.resize(out.size() + static_cast<std::size_t>(c.maxPositions * c.headDim), 0.0f); // two RoPE tables
    if (!c.tieEmbeddings)
        append(m.output.toFloats());
    const std::int32_t header[7] = {static_cast<std::int32_t>(c.hidden), static_cast<std::int32_t>(c.ffn),
                                    static_cast<std::int32_t>(c.layers), static_cast<std::int32_t>(c.heads),
                                    static_cast<std::int32_t>(c.kvHeads),
                                    static_cast<std::int32_t>(c.tieEmbeddings ? c.vocab : -c.vocab),
                                    static_cast<std::int32_t>(c.maxPositions)};
    std::ofstream f(file, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(header), sizeof header);
    f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * 4));
}

void writeRandomHf(const fs::path& folder, const ModelConfig& c, std::uint32_t seed)
{
    CheckpointWriter writer(folder, c, configToHuggingFace(c), DType::F32);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    writer.writeTensors([&](const PlannedTensor& p, const std::string&) {
        std::int64_t n = 1;
        for (auto d : p.shape)
            n *= d;
        std::vector<float> v(static_cast<std::size_t>(n));
        const bool norm = p.role == TensorRole::AttnNorm || p.role == TensorRole::FfnNorm || p.role == TensorRole::OutputNorm;
        for (auto& x : v)
            x = norm ? 1.0f + 0.2f * normal(rng) : normal(rng);
        return Tensor::fromFloats(DType::F32, p.shape, v.data());
    });
    writer.commit();
}

} // namespace

class TestLayouts : public QObject {
    Q_OBJECT

private slots:
    void storiesBinAndHf();
    void aidreamsBinAndHf();
    void storiesGgufAndBin();
    void synthetic_data();
    void synthetic();
};

void TestLayouts::storiesBinAndHf()
{
    const Model bin = loadModel(test::demoDir() / "stories260K.bin");
    const Model hf = loadModel(test::modelsDir() / "stories260K-hf");
    QCOMPARE(bin.sourceRopeLayout, std::string("interleaved"));
    QCOMPARE(hf.sourceRopeLayout, std::string("half"));
    QCOMPARE(bin.config.attentionKind(), std::string("gqa"));
    compareModels(bin, hf, sequence(200, 512, 1));
}

void TestLayouts::aidreamsBinAndHf()
{
    const Model bin = loadModel(test::modelsDir() / "aidreams260K" / "aidreams260K.bin");
    const Model hf = loadModel(test::modelsDir() / "aidreams260K-hf");
    QCOMPARE(bin.config.attentionKind(), std::string("mha"));
    QCOMPARE(bin.config.headDim, std::int64_t(16));
    compareModels(bin, hf, sequence(128, 512, 2));
}

void TestLayouts::storiesGgufAndBin()
{
    const Model gguf = loadModel(test::modelsDir() / "stories260K" / "stories260K.gguf");
    const Model bin = loadModel(test::demoDir() / "stories260K.bin");
    QCOMPARE(gguf.sourceRopeLayout, std::string("interleaved"));
    compareModels(gguf, bin, sequence(200, 512, 3));
}

void TestLayouts::synthetic_data()
{
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("kvHeads");
    QTest::addColumn<int>("headDim");
    QTest::addColumn<bool>("tied");
    QTest::newRow("gqa head 8") << 4 << 2 << 8 << true;
    QTest::newRow("mha head 16") << 2 << 2 << 16 << true;
    QTest::newRow("mqa head 4 untied") << 8 << 1 << 4 << false;
}

void TestLayouts::synthetic()
{
    QFETCH(int, heads);
    QFETCH(int, kvHeads);
    QFETCH(int, headDim);
    QFETCH(bool, tied);
    ModelConfig c;
    c.hidden = 32;
    c.ffn = 40;
    c.layers = 2;
    c.heads = heads;
    c.kvHeads = kvHeads;
    c.headDim = headDim;
    c.vocab = 48;
    c.maxPositions = 40;
    c.tieEmbeddings = tied;
    c.bosId = 1;
    c.eosIds = {2};
    const fs::path dir = test::scratchDir("synthetic");
    writeRandomHf(dir / "hf", c, static_cast<std::uint32_t>(heads * 100 + kvHeads));
    const Model hf = loadModel(dir / "hf");
    writeLlama2c(dir / "m.bin", hf, true);
    writeLlama2c(dir / "wrong.bin", hf, false);
    const Model bin = loadModel(dir / "m.bin");
    QCOMPARE(bin.format, std::string("llama2c"));
    QCOMPARE(bin.config.tieEmbeddings, tied);
    const std::vector<int> ids = sequence(40, 48, 4);
    compareModels(bin, hf, ids);

    // Control: the same file without the interleaving permutation loads fine but computes a different function,
    // so the check above is sensitive to the layout.
    const Model wrong = loadModel(dir / "wrong.bin");
    const MatrixRM a = logitsOf(hf, ids);
    const MatrixRM b = logitsOf(wrong, ids);
    QVERIFY(test::maxAbsoluteDifference(a.data(), b.data(), static_cast<std::size_t>(a.size())) > 1e-3);
    // ... while position 0 (no rotation) is unaffected: RoPE is the only thing the layout changes.
    QVERIFY(test::maxAbsoluteDifference(a.row(0).data(), b.row(0).data(), static_cast<std::size_t>(a.cols())) < 1e-5);
}

QTEST_GUILESS_MAIN(TestLayouts)
#include "tst_layouts.moc"
