// The exactness identities of the method document (section 4) on real checkpoints.
#include "backend/compute_backend.h"
#include "analysis/analyzer.h"
#include "analysis/key_value_split.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"

#include <Eigen/SVD>
#include <QtTest>

using namespace mla;

namespace {

Model convert(const Model& original, ConversionSettings s)
{
    const ConversionPlan plan = planConversion(original.config, s, selectPairs(original.config, s, nullptr));
    return convertModel(cpuBackend(), original, plan);
}

std::int64_t jointRank(const Model& model, const ConversionSettings& s, std::int64_t layer)
{
    const auto selections = selectPairs(model.config, s, nullptr);
    const KeyValueSplit split = splitKeyValue(model.config, model.layers[static_cast<std::size_t>(layer)], selections[static_cast<std::size_t>(layer)]);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(jointKeyValue(split).cast<double>());
    svd.setThreshold(1e-10);
    return svd.rank();
}

} // namespace

class TestExactness : public QObject {
    Q_OBJECT
private slots:
    void everyPairKeptAndNoCompressionIsTheOriginal_data();
    void everyPairKeptAndNoCompressionIsTheOriginal();
    void fullRankJointEqualsNoCompression_data();
    void fullRankJointEqualsNoCompression();
};

void TestExactness::everyPairKeptAndNoCompressionIsTheOriginal_data()
{
    QTest::addColumn<QString>("name");
    QTest::newRow("stories260K (GQA)") << QStringLiteral("stories260K");
    QTest::newRow("aidreams260K (MHA)") << QStringLiteral("aidreams260K");
    QTest::newRow("poem5L (MHA)") << QStringLiteral("poem5L");
}

void TestExactness::everyPairKeptAndNoCompressionIsTheOriginal()
{
    QFETCH(QString, name);
    const Model original = test::loadRealModel(name.toStdString());
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = original.config.headDim / 2;
    s.method = LatentMethod::None;
    const Model converted = convert(original, s);
    QCOMPARE(converted.config.attentionKind(), std::string("mla"));
    const Transformer reference(original);
    const TokenSequences sequences = test::sampleSequences(reference, 4, 64, 11);
    for (MlaForm form : {MlaForm::Absorbed, MlaForm::Expanded}) {
        const Transformer mla(converted, form);
        const ComparisonResult r = compareModels(cpuBackend(), mla, reference, sequences);
        QVERIFY2(r.kl < 1e-6, qPrintable(QStringLiteral("KL %1").arg(r.kl)));
        QCOMPARE(r.top1Agreement, 1.0);
    }
}

void TestExactness::fullRankJointEqualsNoCompression_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("pairs");
    QTest::newRow("stories260K p=1") << QStringLiteral("stories260K") << 1;
    QTest::newRow("aidreams260K p=2") << QStringLiteral("aidreams260K") << 2;
    QTest::newRow("xs260K p=1") << QStringLiteral("xs260K") << 1;
}

void TestExactness::fullRankJointEqualsNoCompression()
{
    QFETCH(QString, name);
    QFETCH(int, pairs);
    const Model original = test::loadRealModel(name.toStdString());
    ConversionSettings none;
    none.strategy = RopeStrategy::Uniform;
    none.ropePairs = pairs;
    none.method = LatentMethod::None;
    std::int64_t rank = 0;
    for (std::int64_t l = 0; l < original.config.layers; ++l)
        rank = std::max(rank, jointRank(original, none, l));
    ConversionSettings joint = none;
    joint.method = LatentMethod::Joint;
    joint.latentDim = rank; // d_c = rank [W_k_nope; W_v] (the largest over layers; extra width is exact zeros)

    const Model partial = convert(original, none);
    const Model full = convert(original, joint);
    const Transformer a(partial);
    const TokenSequences sequences = test::sampleSequences(Transformer(original), 3, 48, 5);
    for (SigmaPlacement sigma : {SigmaPlacement::Up, SigmaPlacement::Sqrt}) {
        joint.sigma = sigma;
        const Model m = convert(original, joint);
        const Transformer b(m);
        for (const auto& seq : sequences) {
            const MatrixRM la = test::sequenceLogits(a, seq);
            const MatrixRM lb = test::sequenceLogits(b, seq);
            const double diff = test::relativeNormDifference(lb.data(), la.data(), static_cast<std::size_t>(la.size()));
            QVERIFY2(diff < 1e-5, qPrintable(QStringLiteral("max relative logit difference %1 at rank %2").arg(diff).arg(rank)));
        }
    }
    (void)full;
}

QTEST_APPLESS_MAIN(TestExactness)
#include "tst_exactness.moc"
