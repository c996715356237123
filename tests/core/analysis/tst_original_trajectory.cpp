// The original model's layer inputs kept by the calibration pass (OriginalTrajectory) and read back in order by the
// conversion's later passes (OriginalLayerInputs): the same bits as running the original model, a cap that keeps the
// first layers only, and nothing read for other tokens.
#include "analysis/analyzer.h"
#include "analysis/original_trajectory.h"
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/sequential_converter.h"
#include "engine/ops.h"
#include "util/error.h"

#include <QtTest>

using namespace mla;

namespace {

struct TrajectoryFixture {
    Model model;
    CalibrationSet calibration;
};

TrajectoryFixture trajectoryFixture()
{
    TrajectoryFixture f;
    f.model = test::loadRealModel("stories260K");
    f.calibration.sequences = test::sampleSequences(Transformer(f.model), 3, 20, 5);
    f.calibration.sequences[1].resize(13); // sequences of different lengths
    return f;
}

std::uint64_t layerBytes(const TrajectoryFixture& f)
{
    return static_cast<std::uint64_t>(f.calibration.tokens()) * static_cast<std::uint64_t>(f.model.config.hidden) * sizeof(float);
}

void analyseKeeping(const TrajectoryFixture& f, OriginalTrajectory& keep)
{
    AnalysisOptions a;
    a.spectra = false;
    a.activationSpectra = false;
    analyzeModel(cpuBackend(), f.model, f.calibration, "test", a, {}, &keep);
}

// The inputs of every layer, by running the whole model one layer at a time.
std::vector<std::vector<MatrixRM>> forwardInputs(const TrajectoryFixture& f)
{
    const Transformer t(f.model);
    std::vector<std::vector<MatrixRM>> inputs(static_cast<std::size_t>(f.model.config.layers));
    std::vector<MatrixRM> hidden;
    for (const auto& s : f.calibration.sequences)
        hidden.push_back(t.embed(s));
    for (std::int64_t l = 0; l < f.model.config.layers; ++l) {
        inputs[static_cast<std::size_t>(l)] = hidden;
        for (auto& h : hidden)
            t.runLayer(l, h);
    }
    return inputs;
}

bool same(const MatrixRM& a, const MatrixRM& b)
{
    return a.rows() == b.rows() && a.cols() == b.cols() && (a.array() == b.array()).all();
}

// Walks `walker` through every layer, checking its inputs against `expected` and advancing with the layer's attention
// outputs as the conversion's passes do.
void walkAndCompare(const TrajectoryFixture& f, OriginalLayerInputs& walker, const std::vector<std::vector<MatrixRM>>& expected, std::size_t count)
{
    const ModelConfig& c = f.model.config;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        QCOMPARE(walker.layer(), l);
        const std::span<const MatrixRM> current = walker.current();
        QCOMPARE(current.size(), count);
        std::vector<MatrixRM> outputs(count);
        const LayerWeights& w = f.model.layers[static_cast<std::size_t>(l)];
        const Transformer layer(singleLayerModel(f.model, w, std::nullopt), MlaForm::Expanded);
        for (std::size_t s = 0; s < count; ++s) {
            QVERIFY2(same(current[s], expected[static_cast<std::size_t>(l)][s]), qPrintable(QStringLiteral("layer %1 sequence %2").arg(l).arg(s)));
            MatrixRM x;
            rmsNormRows(current[s], w.attnNorm, static_cast<float>(c.rmsEps), x);
            linear(w.o, w.oBias, layer.attentionContext(0, x), outputs[s]);
        }
        walker.advance(layer, outputs);
    }
}

} // namespace

class TestOriginalTrajectory : public QObject {
    Q_OBJECT
private slots:
    void keptInputsAreTheOriginalForward();
    void capKeepsTheFirstLayersOnly();
    void walkerReadsWhatIsKeptAndComputesTheRest();
    void otherTokensReadNothing();
    void walkerKeepsWhatItComputes();
};

void TestOriginalTrajectory::keptInputsAreTheOriginalForward()
{
    const TrajectoryFixture f = trajectoryFixture();
    OriginalTrajectory keep(std::uint64_t(1) << 40);
    analyseKeeping(f, keep);
    const std::int64_t layers = f.model.config.layers;
    QCOMPARE(keep.keptLayers(), layers - 1); // layer 0's inputs are the embeddings
    QCOMPARE(keep.bytes(), static_cast<std::uint64_t>(layers - 1) * layerBytes(f));
    QVERIFY(keep.inputs(0) == nullptr);
    QVERIFY(keep.inputs(layers) == nullptr);
    const auto expected = forwardInputs(f);
    for (std::int64_t l = 1; l < layers; ++l) {
        const std::vector<MatrixRM>* kept = keep.inputs(l);
        QVERIFY(kept != nullptr);
        QCOMPARE(kept->size(), f.calibration.sequences.size());
        for (std::size_t s = 0; s < kept->size(); ++s)
            QVERIFY2(same((*kept)[s], expected[static_cast<std::size_t>(l)][s]), qPrintable(QStringLiteral("layer %1 sequence %2").arg(l).arg(s)));
    }
}

void TestOriginalTrajectory::capKeepsTheFirstLayersOnly()
{
    const TrajectoryFixture f = trajectoryFixture();
    OriginalTrajectory keep(2 * layerBytes(f) + layerBytes(f) / 2);
    analyseKeeping(f, keep);
    QCOMPARE(keep.keptLayers(), std::int64_t(2));
    QVERIFY(keep.bytes() <= keep.cap());
    QVERIFY(keep.inputs(2) != nullptr);
    QVERIFY(keep.inputs(3) == nullptr);
    QVERIFY(!keep.wants(3, f.model.config.hidden)); // over the cap
    // Out of order or without room: refused.
    OriginalTrajectory roomy(std::uint64_t(1) << 40);
    roomy.start(f.calibration.sequences, f.model.config.layers);
    QVERIFY(!roomy.wants(2, f.model.config.hidden));
    QVERIFY(roomy.wants(1, f.model.config.hidden));
    QVERIFY(!roomy.wants(0, f.model.config.hidden)); // the embeddings
    OriginalTrajectory oneLayer(std::uint64_t(1) << 40);
    oneLayer.start(f.calibration.sequences, 1);
    QVERIFY(!oneLayer.wants(1, f.model.config.hidden)); // the output of the last layer is no layer's input
    QVERIFY_THROWS_EXCEPTION(Error, roomy.keep(2, forwardInputs(f)[2]));
    QVERIFY_THROWS_EXCEPTION(Error, roomy.keep(1, {}));
    // No cap, nothing kept.
    OriginalTrajectory none;
    analyseKeeping(f, none);
    QCOMPARE(none.keptLayers(), std::int64_t(0));
}

void TestOriginalTrajectory::walkerReadsWhatIsKeptAndComputesTheRest()
{
    const TrajectoryFixture f = trajectoryFixture();
    const auto expected = forwardInputs(f);
    const std::size_t n = f.calibration.sequences.size();
    const Transformer t(f.model);
    // Nothing kept: every layer computed.
    OriginalLayerInputs computed(t, f.calibration.sequences, n, nullptr);
    walkAndCompare(f, computed, expected, n);
    QCOMPARE(computed.layersRead(), std::int64_t(0));
    // Two layers kept: read for layers 1 and 2, computed from layer 2's kept inputs on.
    OriginalTrajectory keep(2 * layerBytes(f));
    analyseKeeping(f, keep);
    QCOMPARE(keep.keptLayers(), std::int64_t(2));
    OriginalLayerInputs partly(t, f.calibration.sequences, n, &keep);
    walkAndCompare(f, partly, expected, n);
    QCOMPARE(partly.layersRead(), std::int64_t(2));
    // A prefix of the sequences (the allocation's token limit) reads the same kept layers.
    OriginalTrajectory all(std::uint64_t(1) << 40);
    analyseKeeping(f, all);
    OriginalLayerInputs prefix(t, f.calibration.sequences, 2, &all);
    walkAndCompare(f, prefix, expected, 2);
    QCOMPARE(prefix.layersRead(), f.model.config.layers - 1);
}

void TestOriginalTrajectory::otherTokensReadNothing()
{
    const TrajectoryFixture f = trajectoryFixture();
    OriginalTrajectory keep(std::uint64_t(1) << 40);
    analyseKeeping(f, keep);
    TrajectoryFixture other = f;
    other.calibration.sequences[2][5] = other.calibration.sequences[2][5] == 7 ? 8 : 7;
    QVERIFY(!keep.covers(other.calibration.sequences, other.calibration.sequences.size()));
    QVERIFY(keep.covers(other.calibration.sequences, 2)); // the first two are the same
    const auto expected = forwardInputs(other);
    OriginalLayerInputs walker(Transformer(other.model), other.calibration.sequences, other.calibration.sequences.size(), &keep);
    walkAndCompare(other, walker, expected, other.calibration.sequences.size());
    QCOMPARE(walker.layersRead(), std::int64_t(0));
}

// A pass that computes the inputs (an allocation on an analysis made earlier) keeps them for the next pass, as far
// as the cap allows, and only when it walks every sequence.
void TestOriginalTrajectory::walkerKeepsWhatItComputes()
{
    const TrajectoryFixture f = trajectoryFixture();
    const auto expected = forwardInputs(f);
    const std::size_t n = f.calibration.sequences.size();
    const Transformer t(f.model);
    const std::int64_t layers = f.model.config.layers;
    OriginalTrajectory keep(std::uint64_t(1) << 40);
    keep.start(f.calibration.sequences, layers);
    OriginalLayerInputs first(t, f.calibration.sequences, n, &keep);
    first.keepComputedIn(&keep);
    walkAndCompare(f, first, expected, n);
    QCOMPARE(first.layersRead(), std::int64_t(0));
    QCOMPARE(keep.keptLayers(), layers - 1);
    OriginalLayerInputs second(t, f.calibration.sequences, n, &keep);
    walkAndCompare(f, second, expected, n);
    QCOMPARE(second.layersRead(), layers - 1);
    // Capped at one layer.
    OriginalTrajectory capped(layerBytes(f));
    capped.start(f.calibration.sequences, layers);
    OriginalLayerInputs cappedWalk(t, f.calibration.sequences, n, &capped);
    cappedWalk.keepComputedIn(&capped);
    walkAndCompare(f, cappedWalk, expected, n);
    QCOMPARE(capped.keptLayers(), std::int64_t(1));
    // A walk over a prefix of the sequences keeps nothing (the trajectory holds every sequence or none).
    OriginalTrajectory prefix(std::uint64_t(1) << 40);
    prefix.start(f.calibration.sequences, layers);
    OriginalLayerInputs prefixWalk(t, f.calibration.sequences, 2, &prefix);
    prefixWalk.keepComputedIn(&prefix);
    walkAndCompare(f, prefixWalk, expected, 2);
    QCOMPARE(prefix.keptLayers(), std::int64_t(0));
}

QTEST_GUILESS_MAIN(TestOriginalTrajectory)
#include "tst_original_trajectory.moc"
