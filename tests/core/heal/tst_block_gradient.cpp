// The healer's hand-written backward pass against double-precision finite differences, for every trained tensor of
// blocks with partial RoPE (different kept pairs per KV head), GQA and MHA, biases, several latent widths and every
// latent method the converter writes; and its forward pass against the engine's expanded MLA layer on a real model.
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "conversion/sequential_converter.h"
#include "heal/heal_block.h"

#include <QtTest>

#include <random>

using namespace mla;
using namespace mla::heal;

namespace {

struct Case {
    const char* name;
    std::int64_t heads, kvHeads, headDim;
    std::vector<std::vector<int>> keptPairs;
    LatentMethod method;
    std::int64_t latentK, latentV;
    bool qkvBias, outputBias, mlpBias;
    std::int64_t slidingWindow;
};

const std::vector<Case>& cases()
{
    using M = LatentMethod;
    static const std::vector<Case> c = {
        {"GQA, 1 pair (different per KV head), joint 5, q/k/v/o biases", 4, 2, 8, {{0}, {2}}, M::Joint, 5, 0, true, true, false, 0},
        {"GQA, 2 pairs, joint 12, no biases", 4, 2, 8, {{0, 3}, {1, 2}}, M::Joint, 12, 0, false, false, false, 0},
        {"MHA, 1 pair, joint 2, sliding window 3, biases", 3, 3, 8, {{1}, {0}, {3}}, M::Joint, 2, 0, true, false, true, 3},
        {"GQA, split 3 + 4, biases", 4, 2, 8, {{0}, {1}}, M::Split, 3, 4, true, true, false, 0},
        {"GQA, key-only 4, biases", 4, 2, 8, {{2}, {0}}, M::Key, 4, 0, true, false, false, 0},
        {"GQA, value-only 6, biases", 4, 2, 8, {{0}, {3}}, M::Value, 0, 6, true, false, false, 0},
        {"GQA, no latent (partial RoPE only)", 4, 2, 8, {{1}, {1}}, M::None, 0, 0, true, false, false, 0},
        {"GQA, every pair kept, joint 6", 4, 2, 8, {{0, 1, 2, 3}, {0, 1, 2, 3}}, M::Joint, 6, 0, true, false, false, 0},
        {"GQA, no pair kept, joint 7, biases", 4, 1, 8, {{}}, M::Joint, 7, 0, true, true, false, 0},
    };
    return c;
}

constexpr std::int64_t kHidden = 16;
constexpr std::int64_t kFfn = 12;

ModelConfig configFor(const Case& k)
{
    ModelConfig c;
    c.hidden = kHidden;
    c.ffn = kFfn;
    c.layers = 1;
    c.heads = k.heads;
    c.kvHeads = k.kvHeads;
    c.headDim = k.headDim;
    c.vocab = 10;
    c.slidingWindow = k.slidingWindow;
    c.rope.theta = 10.0; // low base: the kept pairs rotate visibly over a few positions
    MlaLayerConfig m;
    m.keptPairs = k.keptPairs;
    m.method = k.method;
    m.latentK = k.latentK;
    m.latentV = k.latentV;
    MlaConfig mla;
    mla.layers = {m};
    c.mla = mla;
    return c;
}

Mat<double> randomMatrix(std::int64_t rows, std::int64_t cols, std::mt19937& rng, double sd, double mean = 0.0)
{
    std::normal_distribution<double> normal(mean, sd);
    Mat<double> m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i)
        m.data()[i] = normal(rng);
    return m;
}

struct Block {
    BlockShape shape;
    BlockTensors<double> params;
    FrozenFfn<double> ffn;
    BlockBatch<double> batch;
};

Block randomBlock(const Case& k, std::uint32_t seed)
{
    using B = BlockTensor;
    std::mt19937 rng(seed);
    Block b;
    b.shape = blockShape(configFor(k), 0);
    const std::int64_t d = kHidden, r = b.shape.rope(), nope = b.shape.nope();
    const std::int64_t qRows = k.heads * k.headDim, kv = k.kvHeads;
    auto& p = b.params;
    p[B::Q] = randomMatrix(qRows, d, rng, 0.4);
    if (r > 0)
        p[B::KRope] = randomMatrix(kv * r, d, rng, 0.4);
    std::int64_t keyIn = d, valueIn = d;
    switch (k.method) {
    case LatentMethod::Joint:
        p[B::DownKv] = randomMatrix(k.latentK, d, rng, 0.4);
        keyIn = valueIn = k.latentK;
        break;
    case LatentMethod::Split:
        p[B::DownK] = randomMatrix(k.latentK, d, rng, 0.4);
        p[B::DownV] = randomMatrix(k.latentV, d, rng, 0.4);
        keyIn = k.latentK;
        valueIn = k.latentV;
        break;
    case LatentMethod::Key:
        p[B::DownK] = randomMatrix(k.latentK, d, rng, 0.4);
        keyIn = k.latentK;
        break;
    case LatentMethod::Value:
        p[B::DownV] = randomMatrix(k.latentV, d, rng, 0.4);
        valueIn = k.latentV;
        break;
    case LatentMethod::None:
        break;
    }
    if (nope > 0)
        p[B::UpK] = randomMatrix(kv * nope, keyIn, rng, 0.4);
    p[B::UpV] = randomMatrix(kv * k.headDim, valueIn, rng, 0.4);
    if (k.qkvBias) {
        p[B::QBias] = randomMatrix(1, qRows, rng, 0.2);
        if (r > 0)
            p[B::KRopeBias] = randomMatrix(1, kv * r, rng, 0.2);
        if (nope > 0)
            p[B::UpKBias] = randomMatrix(1, kv * nope, rng, 0.2);
        p[B::UpVBias] = randomMatrix(1, kv * k.headDim, rng, 0.2);
    }
    p[B::O] = randomMatrix(d, qRows, rng, 0.3);
    if (k.outputBias)
        p[B::OBias] = randomMatrix(1, d, rng, 0.2);
    p[B::AttnNorm] = randomMatrix(1, d, rng, 0.1, 1.0);
    p[B::FfnNorm] = randomMatrix(1, d, rng, 0.1, 1.0);
    b.ffn.gate = randomMatrix(kFfn, d, rng, 0.4);
    b.ffn.up = randomMatrix(kFfn, d, rng, 0.4);
    b.ffn.down = randomMatrix(d, kFfn, rng, 0.4);
    if (k.mlpBias) {
        b.ffn.gateBias = randomMatrix(1, kFfn, rng, 0.2);
        b.ffn.upBias = randomMatrix(1, kFfn, rng, 0.2);
        b.ffn.downBias = randomMatrix(1, d, rng, 0.2);
    }
    b.batch.starts = {0, 6, 11}; // two sequences, 6 and 5 tokens
    b.batch.input = randomMatrix(11, d, rng, 1.0);
    b.batch.target = randomMatrix(11, d, rng, 1.0);
    b.batch.normaliser = 1.3;
    return b;
}

} // namespace

class TestBlockGradient : public QObject {
    Q_OBJECT
private slots:
    void gradientMatchesFiniteDifferences_data();
    void gradientMatchesFiniteDifferences();
    void trainMaskLeavesOutWhatCannotLearn();
    void forwardMatchesTheEngine_data();
    void forwardMatchesTheEngine();
};

void TestBlockGradient::gradientMatchesFiniteDifferences_data()
{
    QTest::addColumn<int>("index");
    for (std::size_t i = 0; i < cases().size(); ++i)
        QTest::newRow(cases()[i].name) << static_cast<int>(i);
}

void TestBlockGradient::gradientMatchesFiniteDifferences()
{
    QFETCH(int, index);
    const Case& k = cases()[static_cast<std::size_t>(index)];
    Block b = randomBlock(k, 17u + static_cast<std::uint32_t>(index));
    TrainMask all{};
    for (std::size_t t = 0; t < kBlockTensorCount; ++t)
        all[t] = b.params.t[t].size() > 0;
    BlockTensors<double> g;
    const double loss = blockLossAndGradient(b.shape, b.params, b.ffn, b.batch, all, g);
    QCOMPARE(loss, blockLoss(b.shape, b.params, b.ffn, b.batch));
    QVERIFY(loss > 0.1);

    int checked = 0;
    for (std::size_t t = 0; t < kBlockTensorCount; ++t) {
        if (!all[t])
            continue;
        const auto role = static_cast<BlockTensor>(t);
        const QString name = QString::fromLatin1(blockTensorName(role).data(), static_cast<int>(blockTensorName(role).size()));
        QCOMPARE(g.t[t].rows(), b.params.t[t].rows());
        QCOMPARE(g.t[t].cols(), b.params.t[t].cols());
        Mat<double>& w = b.params.t[t];
        double worst = 0.0, largest = 0.0;
        for (Eigen::Index i = 0; i < w.size(); ++i) {
            const double saved = w.data()[i];
            const double h = 1e-6 * std::max(1.0, std::abs(saved));
            w.data()[i] = saved + h;
            const double up = blockLoss(b.shape, b.params, b.ffn, b.batch);
            w.data()[i] = saved - h;
            const double down = blockLoss(b.shape, b.params, b.ffn, b.batch);
            w.data()[i] = saved;
            const double numeric = (up - down) / (2 * h);
            worst = std::max(worst, std::abs(numeric - g.t[t].data()[i]));
            largest = std::max(largest, std::abs(numeric));
            ++checked;
        }
        if (role == BlockTensor::UpKBias) {
            // Softmax shift invariance: q . b_k is the same for every key of a query, so neither side moves.
            QVERIFY2(largest < 1e-8 && g.t[t].cwiseAbs().maxCoeff() < 1e-12, qPrintable(name));
            continue;
        }
        QVERIFY2(largest > 1e-6, qPrintable(name + QStringLiteral(": the loss does not depend on it")));
        QVERIFY2(worst <= 1e-6 * largest, qPrintable(QStringLiteral("%1: max |analytic - numeric| %2, max |numeric| %3")
                                                         .arg(name).arg(worst).arg(largest)));
    }
    QVERIFY(checked > 500);
}

void TestBlockGradient::trainMaskLeavesOutWhatCannotLearn()
{
    const Block b = randomBlock(cases()[0], 5);
    const BlockTensors<float> p = b.params.cast<float>();
    const TrainMask frozenNorms = trainMask(b.shape, p, false);
    const TrainMask withNorms = trainMask(b.shape, p, true);
    using B = BlockTensor;
    auto at = [](const TrainMask& m, B t) { return m[static_cast<std::size_t>(t)]; };
    for (B t : {B::Q, B::QBias, B::KRope, B::KRopeBias, B::DownKv, B::UpK, B::UpV, B::UpVBias, B::O, B::OBias})
        QVERIFY(at(frozenNorms, t));
    QVERIFY(!at(frozenNorms, B::UpKBias));
    QVERIFY(!at(frozenNorms, B::AttnNorm) && !at(frozenNorms, B::FfnNorm));
    QVERIFY(at(withNorms, B::AttnNorm) && at(withNorms, B::FfnNorm));
    QVERIFY(!at(frozenNorms, B::DownK) && !at(frozenNorms, B::DownV)); // absent in a joint layer
}

void TestBlockGradient::forwardMatchesTheEngine_data()
{
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("latent");
    QTest::addColumn<int>("pairs");
    QTest::addColumn<bool>("biases");
    QTest::addColumn<int>("window");
    QTest::newRow("joint 16, 1 pair") << int(LatentMethod::Joint) << 16 << 1 << false << 0;
    QTest::newRow("joint 8, 2 pairs, q/k/v biases, window 7") << int(LatentMethod::Joint) << 8 << 2 << true << 7;
    QTest::newRow("split 12, biases") << int(LatentMethod::Split) << 12 << 1 << true << 0;
    QTest::newRow("key 8") << int(LatentMethod::Key) << 8 << 1 << false << 0;
    QTest::newRow("value 8, biases") << int(LatentMethod::Value) << 8 << 1 << true << 0;
    QTest::newRow("none, no pairs") << int(LatentMethod::None) << 0 << 0 << false << 0;
}

void TestBlockGradient::forwardMatchesTheEngine()
{
    QFETCH(int, method);
    QFETCH(int, latent);
    QFETCH(int, pairs);
    QFETCH(bool, biases);
    QFETCH(int, window);
    Model original = test::loadRealModel("stories260K");
    original.config.slidingWindow = window;
    if (biases) {
        // Qwen2-style projection biases on a real model, so that every bias path of the conversion is exercised.
        original.config.qkvBias = true;
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.0f, 0.3f);
        for (auto& layer : original.layers) {
            layer.qBias = VectorF::NullaryExpr(original.config.qDim(), [&]() { return normal(rng); });
            layer.kBias = VectorF::NullaryExpr(original.config.kvDim(), [&]() { return normal(rng); });
            layer.vBias = VectorF::NullaryExpr(original.config.kvDim(), [&]() { return normal(rng); });
        }
    }
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = pairs;
    s.method = static_cast<LatentMethod>(method);
    s.latentDim = latent;
    const Model converted = convertModel(cpuBackend(), original, planConversion(original.config, s, selectPairs(original.config, s, nullptr)));
    const Transformer reference(original);
    const TokenSequences sequences = test::sampleSequences(reference, 2, 40, 4);

    for (std::int64_t l = 0; l < converted.config.layers; ++l) {
        const LayerWeights& w = converted.layers[static_cast<std::size_t>(l)];
        const Transformer engine(singleLayerModel(converted, w, converted.config.mla->layers[static_cast<std::size_t>(l)]),
                                 MlaForm::Expanded);
        BlockBatch<float> batch;
        batch.starts = {0};
        std::vector<MatrixRM> expected;
        std::int64_t rows = 0;
        for (const auto& seq : sequences) {
            rows += static_cast<std::int64_t>(seq.size());
            batch.starts.push_back(rows);
        }
        batch.input.resize(rows, converted.config.hidden);
        MatrixRM want(rows, converted.config.hidden);
        for (std::size_t q = 0; q < sequences.size(); ++q) {
            MatrixRM h = Transformer(original).embed(sequences[q]);
            h *= 3.0f; // a larger residual than the embeddings alone
            batch.input.middleRows(batch.starts[q], h.rows()) = h;
            engine.runLayer(0, h);
            want.middleRows(batch.starts[q], h.rows()) = h;
        }
        const MatrixRM got = blockOutput(blockShape(converted.config, l), blockParameters(w), frozenFfn(w), batch);
        const double rel = test::relativeNormDifference(got.data(), want.data(), static_cast<std::size_t>(got.size()));
        QVERIFY2(rel < 2e-6, qPrintable(QStringLiteral("layer %1: relative difference %2").arg(l).arg(rel)));
    }
}

QTEST_APPLESS_MAIN(TestBlockGradient)
#include "tst_block_gradient.moc"
