// Compression behaves as it must: more latent width, less divergence from the original.
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"

#include <QtTest>

using namespace mla;

class TestQuality : public QObject {
    Q_OBJECT
private slots:
    void klFallsAsTheLatentGrows_data();
    void klFallsAsTheLatentGrows();
};

void TestQuality::klFallsAsTheLatentGrows_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("pairs");
    QTest::addColumn<std::vector<int>>("latents");
    // Enough pairs keep their rotation that the latent, not the lost rotations, dominates the divergence (with one
    // pair per head the dropped rotations alone cost ~3 nats and the latent barely matters).
    QTest::newRow("stories260K") << QStringLiteral("stories260K") << 3 << std::vector<int>{4, 8, 16, 24, 32, 40};
    QTest::newRow("aidreams260K") << QStringLiteral("aidreams260K") << 2 << std::vector<int>{8, 16, 32, 48, 64};
}

void TestQuality::klFallsAsTheLatentGrows()
{
    QFETCH(QString, name);
    QFETCH(int, pairs);
    QFETCH(std::vector<int>, latents);
    const Model original = test::loadRealModel(name.toStdString());
    const Transformer reference(original);
    const TokenSequences sequences = test::sampleSequences(reference, 6, 96, 21);
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = pairs;
    const auto selections = selectPairs(original.config, s, nullptr);
    double previous = std::numeric_limits<double>::infinity();
    QString trace;
    for (int latent : latents) {
        s.latentDim = latent;
        const Model m = convertModel(cpuBackend(), original, planConversion(original.config, s, selections));
        const ComparisonResult r = compareModels(cpuBackend(), Transformer(m), reference, sequences);
        trace += QStringLiteral(" %1:%2").arg(latent).arg(r.kl);
        QVERIFY2(r.kl < previous, qPrintable(QStringLiteral("KL did not fall:") + trace));
        previous = r.kl;
    }
    // At the largest width only the dropped rotations remain; the divergence is then that of partial RoPE alone.
    s.method = LatentMethod::None;
    const ComparisonResult ropeOnly = compareModels(cpuBackend(), Transformer(convertModel(cpuBackend(), original, planConversion(original.config, s, selections))), reference, sequences);
    QVERIFY2(std::abs(previous - ropeOnly.kl) < 1e-3 * std::max(1.0, ropeOnly.kl), qPrintable(trace + QStringLiteral(" none:%1").arg(ropeOnly.kl)));
}

QTEST_APPLESS_MAIN(TestQuality)
#include "tst_quality.moc"
