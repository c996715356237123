// The llama2.c (legacy version 0) reader: the real checkpoints load with their published shapes; a synthetic file
// built here maps every tensor to the right slot (query/key rows permuted from interleaved to half RoPE layout,
// everything else untouched); a negative vocab size means an untied classifier at the end; any header that disagrees
// with the file's size, or is inconsistent, is one Error naming the file, before anything is allocated from it.
#include "common/test_support.h"

#include "model/model_loader.h"
#include "util/error.h"

#include <cstring>
#include <fstream>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

struct L2Header {
    std::int32_t dim, hidden, layers, heads, kvHeads, vocab, seqLen;
};

// The float32 tensors of a llama2.c file, in file order.
struct L2Weights {
    std::vector<float> embedding, attnNorm, wq, wk, wv, wo, ffnNorm, w1, w2, w3, finalNorm, ropeTables, classifier;
};

L2Weights randomWeights(const L2Header& h, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    const std::size_t L = static_cast<std::size_t>(h.layers);
    const std::size_t dim = static_cast<std::size_t>(h.dim);
    const std::size_t hd = dim / static_cast<std::size_t>(h.heads);
    const std::size_t kvDim = hd * static_cast<std::size_t>(h.kvHeads);
    const std::size_t vocab = static_cast<std::size_t>(std::abs(h.vocab));
    const std::size_t ffn = static_cast<std::size_t>(h.hidden);
    auto fill = [&](std::size_t n) {
        std::vector<float> v(n);
        for (auto& x : v)
            x = u(rng);
        return v;
    };
    L2Weights w;
    w.embedding = fill(vocab * dim);
    w.attnNorm = fill(L * dim);
    w.wq = fill(L * dim * dim);
    w.wk = fill(L * kvDim * dim);
    w.wv = fill(L * kvDim * dim);
    w.wo = fill(L * dim * dim);
    w.ffnNorm = fill(L * dim);
    w.w1 = fill(L * ffn * dim);
    w.w2 = fill(L * dim * ffn);
    w.w3 = fill(L * ffn * dim);
    w.finalNorm = fill(dim);
    w.ropeTables = fill(2 * static_cast<std::size_t>(h.seqLen) * hd / 2);
    if (h.vocab < 0)
        w.classifier = fill(vocab * dim);
    return w;
}

std::vector<std::uint8_t> serialise(const L2Header& h, const L2Weights& w)
{
    std::vector<std::uint8_t> out(sizeof(L2Header));
    std::memcpy(out.data(), &h, sizeof h);
    for (const auto* v : {&w.embedding, &w.attnNorm, &w.wq, &w.wk, &w.wv, &w.wo, &w.ffnNorm, &w.w1, &w.w2, &w.w3,
                          &w.finalNorm, &w.ropeTables, &w.classifier}) {
        const std::size_t at = out.size();
        out.resize(at + v->size() * 4);
        if (!v->empty())
            std::memcpy(out.data() + at, v->data(), v->size() * 4);
    }
    return out;
}

using mla::test::writeBytes;

std::string llama2cLoadError(const fs::path& path)
{
    try {
        loadModel(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::vector<float> slice(const std::vector<float>& v, std::size_t begin, std::size_t count)
{
    return {v.begin() + static_cast<std::ptrdiff_t>(begin), v.begin() + static_cast<std::ptrdiff_t>(begin + count)};
}

std::vector<float> vec(const VectorF& v) { return {v.data(), v.data() + v.size()}; }

constexpr L2Header kTiny{16, 24, 2, 4, 2, 32, 12};

} // namespace

class TestLlama2c : public QObject {
    Q_OBJECT

private slots:
    void realCheckpointsHavePublishedShapes_data();
    void realCheckpointsHavePublishedShapes();
    void tensorsLandInTheirSlots();
    void negativeVocabMeansUntiedClassifier();
    void sizeMismatch();
    void badHeaders_data();
    void badHeaders();
    void truncatedRealFile();
};

void TestLlama2c::realCheckpointsHavePublishedShapes_data()
{
    QTest::addColumn<QString>("path");
    QTest::addColumn<QList<int>>("shape"); // dim, ffn, layers, heads, kv heads, head dim, vocab, ctx
    QTest::addColumn<QString>("attention");
    const QString models = QString::fromStdString(test::modelsDir().string());
    QTest::newRow("stories260K") << QString::fromStdString((test::demoDir() / "stories260K.bin").string())
                                 << QList<int>{64, 172, 5, 8, 4, 8, 512, 512} << "gqa";
    QTest::newRow("aidreams260K") << models + "/aidreams260K/aidreams260K.bin" << QList<int>{64, 172, 4, 4, 4, 16, 512, 128} << "mha";
    QTest::newRow("poem5L") << models + "/poem5L/poem_model.bin" << QList<int>{96, 256, 5, 6, 6, 16, 2048, 128} << "mha";
    QTest::newRow("xs260K") << models + "/xs260K/xs260K.bin" << QList<int>{64, 192, 5, 8, 4, 8, 512, 256} << "gqa";
}

void TestLlama2c::realCheckpointsHavePublishedShapes()
{
    QFETCH(QString, path);
    QFETCH(QList<int>, shape);
    QFETCH(QString, attention);
    const fs::path p = path.toStdString();
    QCOMPARE(detectCheckpointFormat(p), std::string("llama2c"));
    const Model m = loadModel(p);
    const ModelConfig& c = m.config;
    QCOMPARE(QList<int>({static_cast<int>(c.hidden), static_cast<int>(c.ffn), static_cast<int>(c.layers), static_cast<int>(c.heads),
                         static_cast<int>(c.kvHeads), static_cast<int>(c.headDim), static_cast<int>(c.vocab),
                         static_cast<int>(c.maxPositions)}),
             shape);
    QCOMPARE(QString::fromStdString(c.attentionKind()), attention);
    QCOMPARE(c.architecture, std::string("llama"));
    QCOMPARE(m.format, std::string("llama2c"));
    QCOMPARE(m.sourceRopeLayout, std::string("interleaved"));
    QVERIFY(c.tieEmbeddings);
    QCOMPARE(c.bosId, std::optional<int>(1));
    QCOMPARE(c.eosIds, std::vector<int>({2}));
    QCOMPARE(c.rope.theta, 10000.0);
    QCOMPARE(m.fileBytes, fs::file_size(p));
    // Parameters: embedding, per layer 2 norms + q,k,v,o + 3 FFN matrices, final norm.
    const std::int64_t d = c.hidden, kv = c.kvDim();
    QCOMPARE(m.parameterCount(), c.vocab * d + c.layers * (2 * d + 2 * d * d + 2 * kv * d + 3 * c.ffn * d) + d);
}

void TestLlama2c::tensorsLandInTheirSlots()
{
    const fs::path dir = test::scratchDir("slots");
    const L2Header h = kTiny;
    const L2Weights w = randomWeights(h, 1);
    const fs::path file = dir / "tiny.bin";
    writeBytes(file, serialise(h, w));
    const Model m = loadModel(file);
    const ModelConfig& c = m.config;
    QCOMPARE(c.hidden, std::int64_t(16));
    QCOMPARE(c.ffn, std::int64_t(24));
    QCOMPARE(c.headDim, std::int64_t(4));
    QCOMPARE(c.kvDim(), std::int64_t(8));
    QCOMPARE(c.maxPositions, std::int64_t(12));
    QVERIFY(c.tieEmbeddings);
    QCOMPARE(m.embedding.toFloats(), w.embedding);
    QCOMPARE(m.output.toFloats(), w.embedding);
    QCOMPARE(vec(m.outputNorm), w.finalNorm);
    const std::size_t d = 16, ffn = 24, kvDim = 8, hd = 4;
    for (std::size_t l = 0; l < 2; ++l) {
        const LayerWeights& lw = m.layers[l];
        QCOMPARE(vec(lw.attnNorm), slice(w.attnNorm, l * d, d));
        QCOMPARE(vec(lw.ffnNorm), slice(w.ffnNorm, l * d, d));
        QCOMPARE(lw.v.toFloats(), slice(w.wv, l * kvDim * d, kvDim * d));
        QCOMPARE(lw.o.toFloats(), slice(w.wo, l * d * d, d * d));
        QCOMPARE(lw.gate.toFloats(), slice(w.w1, l * ffn * d, ffn * d));
        QCOMPARE(lw.down.toFloats(), slice(w.w2, l * d * ffn, d * ffn));
        QCOMPARE(lw.up.toFloats(), slice(w.w3, l * ffn * d, ffn * d));
        QCOMPARE(lw.q.shape(), std::vector<std::int64_t>({16, 16}));
        QCOMPARE(lw.k.shape(), std::vector<std::int64_t>({8, 16}));
        // Query/key rows: file row h*hd + 2j (pair j's first dim) -> row h*hd + j; 2j+1 -> h*hd + hd/2 + j.
        const std::vector<float> q = lw.q.toFloats();
        const std::vector<float> k = lw.k.toFloats();
        for (std::size_t head = 0; head < 4; ++head) {
            for (std::size_t j = 0; j < hd / 2; ++j) {
                QCOMPARE(slice(q, (head * hd + j) * d, d), slice(w.wq, l * d * d + (head * hd + 2 * j) * d, d));
                QCOMPARE(slice(q, (head * hd + hd / 2 + j) * d, d), slice(w.wq, l * d * d + (head * hd + 2 * j + 1) * d, d));
                if (head < 2) {
                    QCOMPARE(slice(k, (head * hd + j) * d, d), slice(w.wk, l * kvDim * d + (head * hd + 2 * j) * d, d));
                    QCOMPARE(slice(k, (head * hd + hd / 2 + j) * d, d), slice(w.wk, l * kvDim * d + (head * hd + 2 * j + 1) * d, d));
                }
            }
        }
    }
}

void TestLlama2c::negativeVocabMeansUntiedClassifier()
{
    const fs::path dir = test::scratchDir("untied");
    L2Header h = kTiny;
    h.vocab = -32;
    const L2Weights w = randomWeights(h, 2);
    QCOMPARE(w.classifier.size(), std::size_t(32 * 16));
    const fs::path file = dir / "untied.bin";
    writeBytes(file, serialise(h, w));
    const Model m = loadModel(file);
    QCOMPARE(m.config.vocab, std::int64_t(32));
    QVERIFY(!m.config.tieEmbeddings);
    QCOMPARE(m.embedding.toFloats(), w.embedding);
    QCOMPARE(m.output.toFloats(), w.classifier);
    QVERIFY(m.output.toFloats() != m.embedding.toFloats());
    QCOMPARE(m.output.shape(), std::vector<std::int64_t>({32, 16}));
    // Tied with the same weights gives a different head; untied counts the classifier as parameters.
    L2Header tied = kTiny;
    writeBytes(dir / "tied.bin", serialise(tied, randomWeights(tied, 2)));
    QCOMPARE(m.parameterCount() - loadModel(dir / "tied.bin").parameterCount(), std::int64_t(32 * 16));

    // A negative vocab without the classifier bytes is a size mismatch (and so is a positive one with them).
    L2Weights noClassifier = w;
    noClassifier.classifier.clear();
    writeBytes(dir / "missing.bin", serialise(h, noClassifier));
    QVERIFY(llama2cLoadError(dir / "missing.bin").find("does not match its llama2.c header") != std::string::npos);
    writeBytes(dir / "extra.bin", serialise(tied, w));
    QVERIFY(llama2cLoadError(dir / "extra.bin").find("does not match its llama2.c header") != std::string::npos);
}

void TestLlama2c::sizeMismatch()
{
    const fs::path dir = test::scratchDir("size");
    const auto bytes = serialise(kTiny, randomWeights(kTiny, 3));
    for (long delta : {-4L, -1L, 1L, 4L, 1000L}) {
        std::vector<std::uint8_t> v = bytes;
        v.resize(static_cast<std::size_t>(static_cast<long>(v.size()) + delta), 0);
        const fs::path file = dir / "size.bin";
        writeBytes(file, v);
        const std::string message = llama2cLoadError(file);
        const std::string expected = file.string() + ": file size " + std::to_string(v.size())
                                     + " bytes does not match its llama2.c header, which describes "
                                     + std::to_string(bytes.size()) + " bytes";
        QVERIFY2(message.rfind(expected, 0) == 0, message.c_str());
    }
}

void TestLlama2c::badHeaders_data()
{
    QTest::addColumn<QList<int>>("header");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* name, L2Header h, const char* expected) {
        QTest::newRow(name) << QList<int>{h.dim, h.hidden, h.layers, h.heads, h.kvHeads, h.vocab, h.seqLen} << QString(expected);
    };
    L2Header h;
    h = kTiny; h.dim = 0; row("zero dim", h, "header has a non-positive size (dim 0");
    h = kTiny; h.hidden = -24; row("negative hidden", h, "non-positive size");
    h = kTiny; h.layers = 0; row("zero layers", h, "non-positive size");
    h = kTiny; h.heads = -4; row("negative heads", h, "non-positive size");
    h = kTiny; h.kvHeads = 0; row("zero kv heads", h, "non-positive size");
    h = kTiny; h.vocab = 0; row("zero vocab", h, "non-positive size");
    h = kTiny; h.seqLen = -1; row("negative seq_len", h, "non-positive size");
    h = kTiny; h.vocab = INT32_MIN; row("vocab INT32_MIN", h, "does not match");
    h = kTiny; h.heads = 3; h.kvHeads = 3; row("heads do not divide dim", h, "3 heads do not divide dim 16");
    h = kTiny; h.kvHeads = 3; row("kv heads do not divide heads", h, "3 kv heads do not divide 4 heads");
    h = kTiny; h.dim = 12; row("odd head size", h, "head size 3 is odd");
    h = kTiny; h.dim = 1 << 30; h.heads = 1 << 29; h.kvHeads = 1 << 29; row("huge dim", h, "size overflow in file size");
    h = kTiny; h.layers = INT32_MAX; h.dim = 1 << 30; h.hidden = INT32_MAX; row("overflowing sizes", h, "");
    h = kTiny; h.seqLen = INT32_MAX; row("huge seq_len", h, "does not match");
}

void TestLlama2c::badHeaders()
{
    QFETCH(QList<int>, header);
    QFETCH(QString, expected);
    // A real-sized body under a lying header: the header is checked against the file before anything else.
    std::vector<std::uint8_t> bytes = serialise(kTiny, randomWeights(kTiny, 4));
    for (int i = 0; i < 7; ++i)
        std::memcpy(bytes.data() + 4 * i, &header[i], 4);
    const fs::path file = test::scratchDir("header") / "bad.bin";
    writeBytes(file, bytes);
    const std::string message = llama2cLoadError(file);
    QVERIFY2(message.rfind(file.string() + ": ", 0) == 0, message.c_str());
    QVERIFY2(message.find('\n') == std::string::npos, message.c_str());
    QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
}

void TestLlama2c::truncatedRealFile()
{
    const fs::path dir = test::scratchDir("truncated");
    const std::string full = test::readTextFile(test::modelsDir() / "aidreams260K" / "aidreams260K.bin");
    for (std::size_t n : {std::size_t(4), std::size_t(5), std::size_t(27), std::size_t(28), std::size_t(29), std::size_t(1000),
                          full.size() / 3, full.size() / 2, full.size() - 1}) {
        const fs::path file = dir / "cut.bin";
        test::writeTextFile(file, full.substr(0, n));
        const std::string message = llama2cLoadError(file);
        QVERIFY2(message.rfind(file.string() + ": ", 0) == 0, message.c_str());
        if (n < 28)
            QVERIFY2(message.find("truncated: header") != std::string::npos, message.c_str());
        else
            QVERIFY2(message.find("does not match its llama2.c header") != std::string::npos, message.c_str());
    }
    // Too short to be anything.
    test::writeTextFile(dir / "tiny.bin", "ab");
    QVERIFY(llama2cLoadError(dir / "tiny.bin").find("file is too short to be a checkpoint") != std::string::npos);
    test::writeTextFile(dir / "empty.bin", "");
    QVERIFY(llama2cLoadError(dir / "empty.bin").find("file is too short to be a checkpoint") != std::string::npos);
}

QTEST_GUILESS_MAIN(TestLlama2c)
#include "tst_llama2c.moc"
