// The converted model runs in two forms (expanded, absorbed) that must agree, and the absorbed cache must really be
// the size the formula says.
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "engine/generator.h"

#include <QtTest>

using namespace mla;

namespace {

Model convertStories(LatentMethod method, std::int64_t latent, std::int64_t pairs = 1)
{
    const Model original = test::loadRealModel("stories260K");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = pairs;
    s.method = method;
    s.latentDim = latent;
    return convertModel(cpuBackend(), original, planConversion(original.config, s, selectPairs(original.config, s, nullptr)));
}

} // namespace

class TestMlaInference : public QObject {
    Q_OBJECT
private slots:
    void expandedAndAbsorbedAgree_data();
    void expandedAndAbsorbedAgree();
    void prefillAndDecodeAgreeInAbsorbedForm();
    void cacheSizeMatchesFormula_data();
    void cacheSizeMatchesFormula();
};

void TestMlaInference::expandedAndAbsorbedAgree_data()
{
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("latent");
    QTest::addColumn<int>("pairs");
    QTest::newRow("joint 8") << int(LatentMethod::Joint) << 8 << 1;
    QTest::newRow("joint 24, 2 pairs") << int(LatentMethod::Joint) << 24 << 2;
    QTest::newRow("split 16") << int(LatentMethod::Split) << 16 << 1;
    QTest::newRow("key 8") << int(LatentMethod::Key) << 8 << 1;
    QTest::newRow("value 8") << int(LatentMethod::Value) << 8 << 1;
    QTest::newRow("none") << int(LatentMethod::None) << 0 << 1;
    QTest::newRow("no rope pairs") << int(LatentMethod::Joint) << 12 << 0;
    QTest::newRow("all pairs, joint 16") << int(LatentMethod::Joint) << 16 << 4;
}

void TestMlaInference::expandedAndAbsorbedAgree()
{
    QFETCH(int, method);
    QFETCH(int, latent);
    QFETCH(int, pairs);
    const Model m = convertStories(static_cast<LatentMethod>(method), latent, pairs);
    const Transformer expanded(m, MlaForm::Expanded);
    const Transformer absorbed(m, MlaForm::Absorbed);
    for (const auto& seq : test::sampleSequences(expanded, 3, 64, 9)) {
        const MatrixRM a = test::sequenceLogits(expanded, seq);
        const MatrixRM b = test::sequenceLogits(absorbed, seq);
        const double diff = test::relativeNormDifference(b.data(), a.data(), static_cast<std::size_t>(a.size()));
        QVERIFY2(diff < 1e-5, qPrintable(QStringLiteral("relative difference %1").arg(diff)));
    }
    GenerationOptions g;
    g.steps = 120;
    const std::vector<int> bos{1};
    QCOMPARE(generate(cpuBackend(), absorbed, nullptr, bos, g).ids, generate(cpuBackend(), expanded, nullptr, bos, g).ids);
}

void TestMlaInference::prefillAndDecodeAgreeInAbsorbedForm()
{
    const Model m = convertStories(LatentMethod::Joint, 8);
    const Transformer absorbed(m, MlaForm::Absorbed);
    const std::vector<int> seq = test::sampleSequences(absorbed, 1, 40, 2)[0];
    const MatrixRM all = test::sequenceLogits(absorbed, seq);
    KvCache cache = absorbed.newCache(static_cast<std::int64_t>(seq.size()));
    for (std::size_t t = 0; t < seq.size(); ++t) {
        const MatrixRM step = absorbed.forward(std::span<const int>(&seq[t], 1), cache, Logits::Last);
        const double diff = test::relativeNormDifference(step.data(), all.row(static_cast<Eigen::Index>(t)).data(), static_cast<std::size_t>(step.size()));
        QVERIFY2(diff < 1e-5, qPrintable(QStringLiteral("token %1: %2").arg(t).arg(diff)));
    }
}

void TestMlaInference::cacheSizeMatchesFormula_data()
{
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("latent");
    QTest::addColumn<int>("elements");
    // stories260K: 5 layers, 4 KV heads, head 8; 1 pair = 2 dims per KV head = 8 RoPE elements per layer.
    QTest::newRow("issue example: 1 pair, latent 8") << int(LatentMethod::Joint) << 8 << 5 * (8 + 8);
    QTest::newRow("split 16") << int(LatentMethod::Split) << 16 << 5 * (8 + 16);
    QTest::newRow("key 8 (values full)") << int(LatentMethod::Key) << 8 << 5 * (8 + 8 + 32);
    QTest::newRow("none") << int(LatentMethod::None) << 0 << 5 * 64;
}

void TestMlaInference::cacheSizeMatchesFormula()
{
    QFETCH(int, method);
    QFETCH(int, latent);
    QFETCH(int, elements);
    const Model m = convertStories(static_cast<LatentMethod>(method), latent);
    QCOMPARE(m.config.kvElementsPerToken(), std::int64_t(elements));
    const Transformer absorbed(m, MlaForm::Absorbed);
    GenerationOptions g;
    g.steps = 50;
    const GenerationResult r = generate(cpuBackend(), absorbed, nullptr, {1}, g);
    QCOMPARE(r.kvElementsPerToken, std::int64_t(elements));
    QCOMPARE(r.kvBytesPerToken, 4.0 * elements); // float32 cache
    // The original caches 320 elements per token.
    const Model original = test::loadRealModel("stories260K");
    QCOMPARE(generate(cpuBackend(), Transformer(original), nullptr, {1}, g).kvBytesPerToken, 4.0 * 320);
}

QTEST_APPLESS_MAIN(TestMlaInference)
#include "tst_mla_inference.moc"
