// Statistics measured while the calibration is sampled (StatisticsAccumulator as the sampling decode's observer)
// against a forward pass over the sampled sequences afterwards: every token seen once (the last sampled ones and
// sequences that stop early at EOS included), the same pair norms, moments and input Gram up to float rounding (the
// decode's matrix-vector products sum in another order than the prefill's products), the same analysis; the
// trajectory a conversion keeps is still the original forward's, bit for bit; a backend whose batched decode cannot
// be observed falls back to the forward pass.
#include "analysis/analyzer.h"
#include "analysis/layer_statistics.h"
#include "analysis/original_trajectory.h"
#include "backend/compute_backend.h"
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/recording_backend.h"
#include "common/test_support.h"

#include <QtTest>

#include <set>

using namespace mla;

namespace {

// A random GQA model whose EOS (one id of 40) ends some samples early while the others run on.
Model stoppingModel()
{
    ModelConfig c = test::tinyConfig("qwen2");
    c.layers = 3;
    c.tieEmbeddings = false;
    return test::randomModel(c, 9);
}

Model namedModel(const QString& name)
{
    return name == "stories260K" ? test::loadRealModel("stories260K") : stoppingModel();
}

// Largest difference between two matrices relative to the largest entry of the second.
double relativeDifference(const MatrixXdRM& a, const MatrixXdRM& b)
{
    if (a.rows() != b.rows() || a.cols() != b.cols())
        return std::numeric_limits<double>::infinity();
    const double scale = std::max(b.cwiseAbs().maxCoeff(), 1e-300);
    return (a - b).cwiseAbs().maxCoeff() / scale;
}

CalibrationOptions sampling(std::int64_t samples, std::int64_t length, std::uint64_t seed)
{
    CalibrationOptions o;
    o.samples = samples;
    o.sequenceLength = length;
    o.seed = seed;
    return o;
}

bool identical(const MatrixRM& a, const MatrixRM& b)
{
    return a.rows() == b.rows() && a.cols() == b.cols() && (a.array() == b.array()).all();
}

} // namespace

class TestSampledStatistics : public QObject {
    Q_OBJECT
private slots:
    void samplingMeasuresWhatAForwardMeasures_data();
    void samplingMeasuresWhatAForwardMeasures();
    void analysisIsTheSameSampledOrGiven();
    void keptTrajectoryIsTheOriginalForward();
    void unobservableBackendRunsTheForwardPass();
};

void TestSampledStatistics::samplingMeasuresWhatAForwardMeasures_data()
{
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("length");
    QTest::newRow("stories260K") << "stories260K" << 48;
    QTest::newRow("random qwen2 (stops at EOS)") << "qwen2" << 10;
}

void TestSampledStatistics::samplingMeasuresWhatAForwardMeasures()
{
    QFETCH(QString, model);
    QFETCH(int, length);
    const Model m = namedModel(model);
    const Transformer t(m, MlaForm::Expanded);
    const ModelConfig& c = m.config;
    StatisticsOptions options;
    options.inputGram = true;
    StatisticsAccumulator accumulator(c, options);
    const CalibrationSet set = prepareCalibration(cpuBackend(), t, nullptr, sampling(7, length, 4), {}, &accumulator);
    QVERIFY(set.observed);
    std::vector<LayerStatistics> measured = accumulator.take();
    QCOMPARE(static_cast<std::int64_t>(measured.size()), c.layers);

    std::set<std::size_t> lengths;
    for (const auto& s : set.sequences)
        lengths.insert(s.size());
    if (model != "stories260K") { // some samples stopped at EOS, others ran to the end: both kinds of last token
        QVERIFY(lengths.size() > 1);
        QVERIFY(lengths.count(static_cast<std::size_t>(length)) > 0);
    }

    std::vector<LayerStatistics> forward(static_cast<std::size_t>(c.layers));
    collectLayerStatistics(cpuBackend(), t, set, options,
                           [&](std::int64_t l, LayerStatistics&& s) { forward[static_cast<std::size_t>(l)] = std::move(s); });
    double largest = 0.0;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerStatistics& a = measured[static_cast<std::size_t>(l)];
        const LayerStatistics& b = forward[static_cast<std::size_t>(l)];
        QCOMPARE(a.tokens, set.tokens()); // every token once, the last sampled ones included
        QCOMPARE(b.tokens, set.tokens());
        for (const auto& [x, y, what] : {std::tuple{&a.qPairNorm, &b.qPairNorm, "query pair norms"},
                                         std::tuple{&a.kPairNorm, &b.kPairNorm, "key pair norms"},
                                         std::tuple{&a.qPairMoment, &b.qPairMoment, "query pair moments"},
                                         std::tuple{&a.kPairMoment, &b.kPairMoment, "key pair moments"},
                                         std::tuple{&a.inputGram, &b.inputGram, "input Gram"}}) {
            const double d = relativeDifference(*x, *y);
            largest = std::max(largest, d);
            QVERIFY2(d < 1e-5, qPrintable(QStringLiteral("layer %1 %2: relative difference %3").arg(l).arg(what).arg(d)));
        }
    }
    qInfo("largest relative difference, sampled against forward: %.2e", largest);
}

// The analysis a user gets from the default (sampled) calibration is the analysis of the same ids given explicitly.
void TestSampledStatistics::analysisIsTheSameSampledOrGiven()
{
    const Model m = test::loadRealModel("stories260K");
    AnalysisOptions options;
    options.calibration = sampling(6, 64, 2);
    const AnalysisResult sampled = analyzeModel(cpuBackend(), m, nullptr, options);
    CalibrationSet given;
    given.sequences = sampled.calibrationIds;
    const AnalysisResult reference = analyzeModel(cpuBackend(), m, given, "ids", options);
    QCOMPARE(sampled.calibrationTokens, reference.calibrationTokens);
    QCOMPARE(sampled.layers.size(), reference.layers.size());
    for (std::size_t l = 0; l < sampled.layers.size(); ++l) {
        const LayerAnalysis& a = sampled.layers[l];
        const LayerAnalysis& b = reference.layers[l];
        QVERIFY(a.selection == b.selection);
        QVERIFY(relativeDifference(a.inputCovariance, b.inputCovariance) < 1e-5);
        QCOMPARE(a.activationSpectra.joint.size(), b.activationSpectra.joint.size());
        QVERIFY(!a.activationSpectra.joint.empty());
        for (std::size_t i = 0; i < a.activationSpectra.joint.size(); ++i)
            QVERIFY(std::abs(a.activationSpectra.joint[i] - b.activationSpectra.joint[i]) <= 1e-4 * b.activationSpectra.joint.front());
    }
}

// A conversion's calibration keeps the original model's layer inputs; measured while sampling, the statistics need no
// forward pass, but the layers the trajectory keeps still run (and only those): their inputs are the forward's.
void TestSampledStatistics::keptTrajectoryIsTheOriginalForward()
{
    const Model m = test::loadRealModel("stories260K");
    const ModelConfig& c = m.config;
    AnalysisOptions options;
    options.calibration = sampling(4, 40, 5);
    options.spectra = options.activationSpectra = false;
    OriginalTrajectory roomy(std::uint64_t(1) << 40);
    const AnalysisResult a = analyzeModel(cpuBackend(), m, nullptr, options, {}, &roomy);
    QCOMPARE(roomy.keptLayers(), c.layers - 1);
    const Transformer t(m);
    std::vector<MatrixRM> hidden;
    for (const auto& s : a.calibrationIds)
        hidden.push_back(t.embed(s));
    for (std::int64_t l = 1; l < c.layers; ++l) {
        for (auto& h : hidden)
            t.runLayer(l - 1, h);
        const std::vector<MatrixRM>* kept = roomy.inputs(l);
        QVERIFY(kept != nullptr);
        QCOMPARE(kept->size(), hidden.size());
        for (std::size_t s = 0; s < hidden.size(); ++s)
            QVERIFY2(identical((*kept)[s], hidden[s]), qPrintable(QStringLiteral("layer %1 sequence %2").arg(l).arg(s)));
    }
    // Room for two layers: the first two kept, the same bits.
    const std::uint64_t layerBytes = OriginalTrajectory::layerBytes(a.calibrationTokens, c.hidden);
    OriginalTrajectory small(2 * layerBytes + layerBytes / 2);
    analyzeModel(cpuBackend(), m, nullptr, options, {}, &small);
    QCOMPARE(small.keptLayers(), std::int64_t(2));
    QVERIFY(small.inputs(2) != nullptr && identical((*small.inputs(2))[0], (*roomy.inputs(2))[0]));
}

// Without an observable batched decode (here: one decoder session per sequence) the same calibration is sampled and
// the statistics come from a forward pass over it.
void TestSampledStatistics::unobservableBackendRunsTheForwardPass()
{
    const Model m = test::loadRealModel("stories260K");
    const Transformer t(m, MlaForm::Expanded);
    test::RecordingBackend recording;
    recording.sessionPerSequence = true;
    QVERIFY(!recording.batchDecodeObservable());
    QVERIFY(cpuBackend().batchDecodeObservable());
    StatisticsAccumulator accumulator(m.config, {});
    const CalibrationSet unobserved = prepareCalibration(recording, t, nullptr, sampling(3, 30, 6), {}, &accumulator);
    QVERIFY(!unobserved.observed);
    QCOMPARE(accumulator.take().front().tokens, std::int64_t(0));
    const CalibrationSet observed = prepareCalibration(cpuBackend(), t, nullptr, sampling(3, 30, 6));
    QVERIFY(!observed.observed); // no observer asked for
    QVERIFY(unobserved.sequences == observed.sequences);

    AnalysisOptions options;
    options.calibration = sampling(3, 30, 6);
    const std::int64_t before = recording.calls();
    const AnalysisResult viaForward = analyzeModel(recording, m, nullptr, options);
    QVERIFY(recording.calls() > before);
    const AnalysisResult viaSampling = analyzeModel(cpuBackend(), m, nullptr, options);
    QVERIFY(viaForward.calibrationIds == viaSampling.calibrationIds);
    for (std::size_t l = 0; l < viaForward.layers.size(); ++l)
        QVERIFY(viaForward.layers[l].selection == viaSampling.layers[l].selection);
}

QTEST_GUILESS_MAIN(TestSampledStatistics)
#include "tst_sampled_statistics.moc"
