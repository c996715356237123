// The pieces of the training-free conversion that goes beyond the paper, each on a small exact case.
#include "backend/compute_backend.h"
#include "analysis/analyzer.h"
#include "analysis/original_trajectory.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/budget_allocation.h"
#include "conversion/layer_converter.h"
#include "conversion/least_squares.h"
#include "conversion/presets.h"
#include "conversion/sequential_converter.h"

#include <QtTest>

#include <random>

using namespace mla;

class TestBeyondPaper : public QObject {
    Q_OBJECT
private slots:
    void whiteningWithIdentityCovarianceIsTheWeightSvd();
    void whiteningMinimisesTheActivationError();
    void allocationIsOptimalOnABruteForcedToy();
    void allocationRejectsAnImpossibleBudget();
    void leastSquaresRefitNeverIncreasesTheObjective();
    void sequentialRefitsNeverIncreaseCalibrationError();
    void keptTrajectoryLeavesAllocationAndConversionUnchanged();
    void sequentialCalibrationFollowsTheRefitTokens();
    void refitOnFewerTokensIsTheConversionOfTheFirstSequences();
    void presetsSetWhatTheyPromise();
};

void TestBeyondPaper::whiteningWithIdentityCovarianceIsTheWeightSvd()
{
    const Model model = test::loadRealModel("aidreams260K");
    const ModelConfig& c = model.config;
    MlaLayerConfig target;
    target.keptPairs = selectLayerPairs(c, RopeStrategy::High, 1, 0, nullptr);
    target.latentK = 20;
    ConversionSettings plain;
    ConversionSettings whitened;
    whitened.activationAware = true;
    const MatrixXdRM identity = MatrixXdRM::Identity(c.hidden, c.hidden);
    const ConvertedAttention a = convertAttention(cpuBackend(), c, model.layers[1], target, plain);
    const ConvertedAttention b = convertAttention(cpuBackend(), c, model.layers[1], target, whitened, &identity);
    // Same subspace and the same product (the ridge of 1e-6 perturbs it at that relative level).
    const MatrixRM pa = a.upV * a.downKv, pb = b.upV * b.downKv;
    QVERIFY((pa - pb).norm() <= 1e-4 * pa.norm());
    QVERIFY(std::abs(a.jointRelativeError - b.jointRelativeError) < 1e-5);
}

void TestBeyondPaper::whiteningMinimisesTheActivationError()
{
    // On anisotropic inputs, the whitened factors must reconstruct M x better than the weight SVD does.
    const Model model = test::loadRealModel("stories260K");
    const ModelConfig& c = model.config;
    std::mt19937 rng(3);
    std::normal_distribution<double> normal;
    MatrixXdRM x(2000, c.hidden);
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < x.cols(); ++j)
            x(i, j) = normal(rng) * (j < 8 ? 10.0 : 0.3); // a few dominant input directions
    const MatrixXdRM covariance = x.transpose() * x / static_cast<double>(x.rows());
    MlaLayerConfig target;
    target.keptPairs = selectLayerPairs(c, RopeStrategy::High, 1, 0, nullptr);
    target.latentK = 6;
    ConversionSettings whitened;
    whitened.activationAware = true;
    const ConvertedAttention w = convertAttention(cpuBackend(), c, model.layers[2], target, {}, nullptr);
    const ConvertedAttention a = convertAttention(cpuBackend(), c, model.layers[2], target, whitened, &covariance);
    const MatrixXdRM v = model.layers[2].v.toMatrix().cast<double>();
    auto activationError = [&](const ConvertedAttention& f) {
        const MatrixXdRM approx = f.upV.cast<double>() * f.downKv.cast<double>();
        return ((v - approx) * x.transpose()).norm();
    };
    QVERIFY2(activationError(a) < 0.9 * activationError(w),
             qPrintable(QStringLiteral("%1 vs %2").arg(activationError(a)).arg(activationError(w))));
}

void TestBeyondPaper::allocationIsOptimalOnABruteForcedToy()
{
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> cost(0.0, 1.0);
    std::uniform_int_distribution<int> size(1, 9);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<std::vector<AllocationCandidate>> layers(4);
        for (auto& layer : layers) {
            for (int k = 0; k < 4; ++k) {
                const int e = size(rng);
                layer.push_back({k, e, e, cost(rng)});
            }
        }
        const std::int64_t budget = 14;
        double bestCost = std::numeric_limits<double>::infinity();
        for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b)
                for (int c = 0; c < 4; ++c)
                    for (int d = 0; d < 4; ++d) {
                        const auto e = layers[0][a].elements + layers[1][b].elements + layers[2][c].elements + layers[3][d].elements;
                        if (e <= budget)
                            bestCost = std::min(bestCost, layers[0][a].cost + layers[1][b].cost + layers[2][c].cost + layers[3][d].cost);
                    }
        if (bestCost == std::numeric_limits<double>::infinity()) {
            QVERIFY_THROWS_EXCEPTION(Error, allocateBudget(layers, budget));
            continue;
        }
        const Allocation got = allocateBudget(layers, budget);
        QVERIFY(got.elements <= budget);
        QVERIFY2(std::abs(got.totalCost - bestCost) < 1e-12, qPrintable(QStringLiteral("%1 vs %2").arg(got.totalCost).arg(bestCost)));
    }
}

void TestBeyondPaper::allocationRejectsAnImpossibleBudget()
{
    std::vector<std::vector<AllocationCandidate>> layers{{{0, 5, 5, 1.0}}, {{0, 6, 6, 1.0}}};
    QVERIFY_THROWS_EXCEPTION(Error, allocateBudget(layers, 10));
    QCOMPARE(allocateBudget(layers, 11).elements, std::int64_t(11));
}

void TestBeyondPaper::leastSquaresRefitNeverIncreasesTheObjective()
{
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    for (double ridge : {0.0, 1e-3, 1.0, 100.0}) {
        LeastSquaresFit fit(6, 3);
        MatrixRM truth(3, 6);
        for (Eigen::Index i = 0; i < truth.size(); ++i)
            truth.data()[i] = normal(rng);
        for (int batch = 0; batch < 5; ++batch) {
            MatrixRM x(40, 6), y(40, 3);
            for (Eigen::Index i = 0; i < x.size(); ++i)
                x.data()[i] = normal(rng);
            y = x * truth.transpose();
            for (Eigen::Index i = 0; i < y.size(); ++i)
                y.data()[i] += 0.1f * normal(rng);
            fit.add(x, y);
        }
        MatrixRM start = truth;
        for (Eigen::Index i = 0; i < start.size(); ++i)
            start.data()[i] += normal(rng);
        const MatrixRM solved = fit.solve(start, ridge);
        QVERIFY(fit.residual(solved) <= fit.residual(start) * (1 + 1e-9));
        if (ridge == 0.0)
            QVERIFY(fit.residual(solved) <= fit.residual(truth) * (1 + 1e-6)); // the unregularised optimum
    }
}

void TestBeyondPaper::sequentialRefitsNeverIncreaseCalibrationError()
{
    for (const char* name : {"stories260K", "aidreams260K"}) {
        const Model model = test::loadRealModel(name);
        const Transformer t(model);
        CalibrationSet calibration;
        calibration.sequences = test::sampleSequences(t, 4, 64, 2);
        ConversionSettings s;
        s.strategy = RopeStrategy::High;
        s.ropePairs = 1;
        s.targetSaving = 0.75;
        s.activationAware = true;
        s.refit = true;
        const ConversionPlan plan = planConversion(model.config, s, selectPairs(model.config, s, nullptr));
        std::vector<LayerFitReport> reports;
        convertSequentially(cpuBackend(), model, plan, calibration, {}, &reports);
        QCOMPARE(static_cast<std::int64_t>(reports.size()), model.config.layers);
        for (const auto& r : reports) {
            QVERIFY(r.upResidualAfter <= r.upResidualBefore * (1 + 1e-9));
            QVERIFY(r.outputResidualAfter <= r.outputResidualBefore * (1 + 1e-9));
            QVERIFY2(r.outputErrorFinal <= r.outputErrorInitial * (1 + 1e-6),
                     qPrintable(QStringLiteral("%1: %2 -> %3").arg(QString::fromLatin1(name)).arg(r.outputErrorInitial).arg(r.outputErrorFinal)));
        }
    }
}

// The allocation and the sequential conversion read the original model's layer inputs from the calibration pass
// (here two layers kept, the rest computed) instead of running the original again: the same bits either way.
void TestBeyondPaper::keptTrajectoryLeavesAllocationAndConversionUnchanged()
{
    const Model model = test::loadRealModel("stories260K");
    CalibrationSet calibration;
    calibration.sequences = test::sampleSequences(Transformer(model), 3, 32, 4);
    const ModelConfig& c = model.config;
    OriginalTrajectory kept(2 * static_cast<std::uint64_t>(calibration.tokens() * c.hidden) * sizeof(float));
    AnalysisOptions a;
    a.settings.strategy = RopeStrategy::RotationLoss;
    a.settings.activationAware = true;
    a.spectra = false;
    a.activationSpectra = false;
    const AnalysisResult analysis = analyzeModel(cpuBackend(), model, calibration, "test", a, {}, &kept);
    QCOMPARE(kept.keptLayers(), std::int64_t(2));

    AllocationOptions o;
    o.budget = c.layers * 2 * c.kvDim() / 4;
    const auto computed = measureAllocationCandidates(cpuBackend(), model, analysis, calibration, o);
    const auto read = measureAllocationCandidates(cpuBackend(), model, analysis, calibration, o, {}, &kept);
    QCOMPARE(read.size(), computed.size());
    for (std::size_t l = 0; l < read.size(); ++l) {
        QCOMPARE(read[l].size(), computed[l].size());
        for (std::size_t i = 0; i < read[l].size(); ++i) {
            QCOMPARE(read[l][i].pairs, computed[l][i].pairs);
            QCOMPARE(read[l][i].latent, computed[l][i].latent);
            QCOMPARE(read[l][i].cost, computed[l][i].cost);
        }
    }

    ConversionSettings s;
    applyPreset("best", s);
    s.ropePairs = 1;
    s.targetSaving = 0.75;
    s.allocate = false;
    const ConversionPlan plan = planConversion(c, s, selectPairs(c, s, &analysis));
    std::vector<LayerFitReport> r0, r1;
    const Model m0 = convertSequentially(cpuBackend(), model, plan, calibration, {}, &r0);
    const Model m1 = convertSequentially(cpuBackend(), model, plan, calibration, {}, &r1, &kept);
    for (std::size_t l = 0; l < r0.size(); ++l) {
        QCOMPARE(r1[l].outputErrorInitial, r0[l].outputErrorInitial);
        QCOMPARE(r1[l].outputErrorFinal, r0[l].outputErrorFinal);
        QCOMPARE(r1[l].balanced, r0[l].balanced);
        const MatrixRM o0 = m0.layers[l].o.toMatrix(), o1 = m1.layers[l].o.toMatrix();
        QVERIFY((o0.array() == o1.array()).all());
        const MatrixRM u0 = m0.layers[l].upV.toMatrix(), u1 = m1.layers[l].upV.toMatrix();
        QVERIFY((u0.array() == u1.array()).all());
    }
}

// Half the calibration, at least 4 tokens per feature of the widest fit, in whole sequences from the first.
void TestBeyondPaper::sequentialCalibrationFollowsTheRefitTokens()
{
    ModelConfig smollm; // the SmolLM-135M shape's widths: hidden 576, 9 heads of 64
    smollm.hidden = 576;
    smollm.heads = 9;
    smollm.headDim = 64;
    ModelConfig llama7b = smollm; // a 7B's 4096 features
    llama7b.hidden = 4096;
    llama7b.heads = 32;
    llama7b.headDim = 128;
    ModelConfig tiny = smollm; // the shipped 260K models
    tiny.hidden = 64;
    tiny.heads = 8;
    tiny.headDim = 8;
    const std::vector<std::vector<int>> sixteen(16, std::vector<int>(256, 1));
    QCOMPARE(sequentialCalibrationCount(smollm, sixteen, kRefitTokensAuto), std::size_t(9)); // 4 x 576 = 2304 tokens
    QCOMPARE(sequentialCalibrationCount(tiny, sixteen, kRefitTokensAuto), std::size_t(8));   // half of 4096
    QCOMPARE(sequentialCalibrationCount(llama7b, sixteen, kRefitTokensAuto), std::size_t(16)); // 16384 wanted: all
    QCOMPARE(sequentialCalibrationCount(tiny, sixteen, kRefitTokensAll), std::size_t(16));
    QCOMPARE(sequentialCalibrationCount(tiny, sixteen, 1), std::size_t(1));
    QCOMPARE(sequentialCalibrationCount(tiny, sixteen, 257), std::size_t(2)); // whole sequences: rounded up
    QCOMPARE(sequentialCalibrationCount(tiny, sixteen, 1 << 20), std::size_t(16));
    // Sequences of uneven length (sampled ones stop at an end of text): tokens are counted, not sequences.
    std::vector<std::vector<int>> uneven{std::vector<int>(100, 1), std::vector<int>(200, 1), std::vector<int>(10, 1), std::vector<int>(290, 1)};
    QCOMPARE(sequentialCalibrationCount(tiny, uneven, kRefitTokensAuto), std::size_t(2)); // 300 of 600 (above 4 x 64)
    uneven.front().resize(50);
    QCOMPARE(sequentialCalibrationCount(tiny, uneven, kRefitTokensAuto), std::size_t(4)); // 275 wanted: 260 after three
}

// With fewer refit tokens than the calibration holds, the sequential conversion is exactly the conversion of the first
// sequences alone (the same bits), and reports the tokens it ran on.
void TestBeyondPaper::refitOnFewerTokensIsTheConversionOfTheFirstSequences()
{
    const Model model = test::loadRealModel("stories260K");
    const ModelConfig& c = model.config;
    CalibrationSet all, first;
    all.sequences = test::sampleSequences(Transformer(model), 6, 64, 9);
    first.sequences.assign(all.sequences.begin(), all.sequences.begin() + 4);
    ConversionSettings s;
    applyPreset("best", s);
    s.strategy = RopeStrategy::High; // no analysis needed
    s.ropePairs = 1;
    s.targetSaving = 0.75;
    s.allocate = false;
    const ConversionPlan plan = planConversion(c, s, selectPairs(c, s, nullptr));
    QCOMPARE(sequentialCalibrationCount(c, all.sequences, s.refitTokens), std::size_t(4)); // 4 x 64 features = 256 tokens
    std::int64_t firstTokens = 0;
    for (const auto& q : first.sequences)
        firstTokens += static_cast<std::int64_t>(q.size());
    ConversionPlan everyToken = plan;
    everyToken.settings.refitTokens = kRefitTokensAll;
    std::vector<LayerFitReport> rAuto, rFirst, rAll;
    const Model mAuto = convertSequentially(cpuBackend(), model, plan, all, {}, &rAuto);
    const Model mFirst = convertSequentially(cpuBackend(), model, everyToken, first, {}, &rFirst);
    const Model mAll = convertSequentially(cpuBackend(), model, everyToken, all, {}, &rAll);
    bool allDiffers = false;
    for (std::size_t l = 0; l < rAuto.size(); ++l) {
        QCOMPARE(rAuto[l].tokens, firstTokens);
        QCOMPARE(rFirst[l].tokens, firstTokens);
        QCOMPARE(rAll[l].tokens, all.tokens());
        QCOMPARE(rAuto[l].outputErrorFinal, rFirst[l].outputErrorFinal);
        const MatrixRM o0 = mAuto.layers[l].o.toMatrix(), o1 = mFirst.layers[l].o.toMatrix(), o2 = mAll.layers[l].o.toMatrix();
        QVERIFY((o0.array() == o1.array()).all());
        allDiffers = allDiffers || !(o0.array() == o2.array()).all();
    }
    QVERIFY(allDiffers);
}

void TestBeyondPaper::presetsSetWhatTheyPromise()
{
    ConversionSettings s;
    applyPreset("paper", s);
    QCOMPARE(s.strategy, RopeStrategy::TwoNorm);
    QCOMPARE(s.method, LatentMethod::Joint);
    QCOMPARE(s.sigma, SigmaPlacement::Up);
    QVERIFY(!s.activationAware && !s.refit && !s.allocate);
    QVERIFY(!settingsNeedCalibrationPass(s));
    applyPreset("best", s);
    QVERIFY(s.activationAware && s.refit && s.allocate && s.chooseBalance);
    QVERIFY_THROWS_EXCEPTION(Error, applyPreset("fastest", s));
}

QTEST_APPLESS_MAIN(TestBeyondPaper)
#include "tst_beyond_paper.moc"
