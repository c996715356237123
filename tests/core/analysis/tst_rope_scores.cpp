// The 2-norm contribution scores against an independent per-token computation, and layout independence.
#include "backend/compute_backend.h"
#include "analysis/analyzer.h"
#include "analysis/layer_statistics.h"
#include "analysis/rope_scores.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include <QtTest>

#include <cmath>

using namespace mla;

namespace {

// Independent reference: for each calibration sequence, recompute every layer's pre-RoPE queries and keys with an
// ordinary forward pass (an observer that only copies them), then loop over tokens, heads and pairs.
struct Capture : ForwardObserver {
    std::vector<MatrixRM> queries, keys;
    void onLayer(const LayerActivations& a) override
    {
        queries[static_cast<std::size_t>(a.layer)] = *a.queries;
        keys[static_cast<std::size_t>(a.layer)] = *a.keys;
    }
};

} // namespace

class TestRopeScores : public QObject {
    Q_OBJECT
private slots:
    void paperScoresMatchPerTokenLoop();
    void interleavedAndHalfLayoutsGiveTheSameScores();
    void rotationLossVanishesWithoutRotation();
};

void TestRopeScores::paperScoresMatchPerTokenLoop()
{
    const Model model = test::loadRealModel("stories260K");
    const ModelConfig& c = model.config;
    const Transformer transformer(model, MlaForm::Expanded);
    CalibrationSet calibration;
    calibration.sequences = test::sampleSequences(transformer, 3, 40, 7);

    std::vector<LayerStatistics> stats(static_cast<std::size_t>(c.layers));
    collectLayerStatistics(cpuBackend(), transformer, calibration, {}, [&](std::int64_t l, LayerStatistics&& s) { stats[static_cast<std::size_t>(l)] = std::move(s); });

    // Reference sums over tokens, in double.
    const std::int64_t pairs = c.headDim / 2;
    std::vector<std::vector<double>> qSum(static_cast<std::size_t>(c.layers), std::vector<double>(static_cast<std::size_t>(c.heads * pairs)));
    std::vector<std::vector<double>> kSum(static_cast<std::size_t>(c.layers), std::vector<double>(static_cast<std::size_t>(c.kvHeads * pairs)));
    double tokens = 0;
    for (const auto& seq : calibration.sequences) {
        Capture capture;
        capture.queries.resize(static_cast<std::size_t>(c.layers));
        capture.keys.resize(static_cast<std::size_t>(c.layers));
        KvCache cache = transformer.newCache(static_cast<std::int64_t>(seq.size()));
        transformer.forward(seq, cache, Logits::None, &capture);
        tokens += static_cast<double>(seq.size());
        for (std::int64_t l = 0; l < c.layers; ++l) {
            const MatrixRM& q = capture.queries[static_cast<std::size_t>(l)];
            const MatrixRM& k = capture.keys[static_cast<std::size_t>(l)];
            for (Eigen::Index t = 0; t < q.rows(); ++t) {
                for (std::int64_t h = 0; h < c.heads; ++h)
                    for (std::int64_t j = 0; j < pairs; ++j)
                        qSum[static_cast<std::size_t>(l)][static_cast<std::size_t>(h * pairs + j)] +=
                            std::hypot(double(q(t, h * c.headDim + j)), double(q(t, h * c.headDim + j + pairs)));
                for (std::int64_t kv = 0; kv < c.kvHeads; ++kv)
                    for (std::int64_t j = 0; j < pairs; ++j)
                        kSum[static_cast<std::size_t>(l)][static_cast<std::size_t>(kv * pairs + j)] +=
                            std::hypot(double(k(t, kv * c.headDim + j)), double(k(t, kv * c.headDim + j + pairs)));
            }
        }
    }
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerRopeScores s = computeRopeScores(c, stats[static_cast<std::size_t>(l)], 40);
        for (std::int64_t kv = 0; kv < c.kvHeads; ++kv) {
            for (std::int64_t j = 0; j < pairs; ++j) {
                double expected = 0.0; // separate means, product, summed over the KV group (paper-compatible)
                for (std::int64_t h = kv * c.group(); h < (kv + 1) * c.group(); ++h)
                    expected += (qSum[static_cast<std::size_t>(l)][static_cast<std::size_t>(h * pairs + j)] / tokens)
                                * (kSum[static_cast<std::size_t>(l)][static_cast<std::size_t>(kv * pairs + j)] / tokens);
                QVERIFY2(std::fabs(s.perKvHead(kv, j) - expected) <= 1e-9 * std::max(1.0, expected),
                         qPrintable(QStringLiteral("layer %1 kv %2 pair %3: %4 vs %5").arg(l).arg(kv).arg(j).arg(s.perKvHead(kv, j)).arg(expected)));
            }
        }
    }
}

void TestRopeScores::interleavedAndHalfLayoutsGiveTheSameScores()
{
    AnalysisOptions options;
    options.calibration.samples = 2;
    options.calibration.sequenceLength = 32;
    options.settings.ropePairs = 1;
    const AnalysisResult fromBin = analyzeModel(cpuBackend(), test::loadRealModel("stories260K"), nullptr, options);
    const AnalysisResult fromHf = analyzeModel(cpuBackend(), test::loadRealModel("stories260K-hf"), nullptr, options);
    QCOMPARE(fromBin.calibrationIds, fromHf.calibrationIds);
    for (std::size_t l = 0; l < fromBin.layers.size(); ++l) {
        const auto& a = fromBin.layers[l].scores.perKvHead;
        const auto& b = fromHf.layers[l].scores.perKvHead;
        QCOMPARE((a - b).cwiseAbs().maxCoeff(), 0.0);
        QCOMPARE(fromBin.layers[l].selection, fromHf.layers[l].selection);
    }
}

void TestRopeScores::rotationLossVanishesWithoutRotation()
{
    // With a context of one token the query-key distance is always 0: no rotation, so nothing is lost.
    const Model model = test::loadRealModel("aidreams260K");
    const Transformer transformer(model, MlaForm::Expanded);
    CalibrationSet calibration;
    calibration.sequences = test::sampleSequences(transformer, 2, 16, 3);
    collectLayerStatistics(cpuBackend(), transformer, calibration, {}, [&](std::int64_t, LayerStatistics&& s) {
        const LayerRopeScores none = computeRopeScores(model.config, s, 1);
        QCOMPARE(none.rotationLoss.cwiseAbs().maxCoeff(), 0.0);
        const LayerRopeScores some = computeRopeScores(model.config, s, 128);
        QVERIFY(some.rotationLoss.minCoeff() >= 0.0);
        QVERIFY(some.rotationLoss.maxCoeff() > 0.0);
        // The fastest pair (j = 0) rotates through every angle: its loss must exceed that of the slowest pair on
        // average over heads, whose rotation over 128 tokens is small.
        QVERIFY(some.rotationLoss.col(0).sum() / std::max(1e-30, some.queryNorm.col(0).squaredNorm())
                > some.rotationLoss.col(some.rotationLoss.cols() - 1).sum() / std::max(1e-30, some.queryNorm.col(some.queryNorm.cols() - 1).squaredNorm()));
    });
}

QTEST_APPLESS_MAIN(TestRopeScores)
#include "tst_rope_scores.moc"
