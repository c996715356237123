// The fast measurement of allocation candidates (shared widths, coarse-to-fine pair counts, sampled rows and a
// sketched output error) against the exhaustive one: a single-layer model and full attention per candidate.
#include "analysis/analyzer.h"
#include "backend/compute_backend.h"
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/budget_allocation.h"
#include "conversion/candidate_errors.h"
#include "conversion/layer_converter.h"
#include "conversion/sequential_converter.h"
#include "engine/ops.h"

#include <QtTest>

#include <map>
#include <random>

using namespace mla;

namespace {

struct Fixture {
    Model model;
    CalibrationSet calibration;
    AnalysisResult analysis;
    std::int64_t budget = 0;
};

Fixture fixture(const char* name, int sequences, int length)
{
    Fixture f;
    f.model = test::loadRealModel(name);
    const Transformer t(f.model);
    f.calibration.sequences = test::sampleSequences(t, sequences, length, 2);
    AnalysisOptions a;
    a.settings.strategy = RopeStrategy::RotationLoss;
    a.spectra = false;
    a.activationSpectra = false;
    f.analysis = analyzeModel(cpuBackend(), f.model, f.calibration, "test", a);
    const ModelConfig& c = f.model.config;
    f.budget = c.layers * 2 * c.kvDim() / 4; // a 75% KV saving
    return f;
}

AllocationOptions exact(std::int64_t budget)
{
    AllocationOptions o;
    o.budget = budget;
    o.queryRows = 0;
    o.sequences = 0;
    o.sketch = 0;
    o.pairStep = 1;
    return o;
}

using Key = std::pair<std::int64_t, std::int64_t>;

std::map<Key, double> costs(const std::vector<AllocationCandidate>& layer)
{
    std::map<Key, double> m;
    for (const auto& a : layer)
        m[{a.pairs, a.latent}] = a.cost;
    return m;
}

} // namespace

class TestAllocationSpeed : public QObject {
    Q_OBJECT
private slots:
    void sharedWidthErrorsEqualTheDirectEvaluation();
    void coarseToFineFindsTheExhaustiveOptimum();
    void defaultFastPathChoosesTheExhaustiveSplit();
    void fixedPairsMeasureOnlyThatCount();
    void analysisCovarianceServesOnlyItsOwnTokens();
    void sequenceSubsetIsTheErrorOfThoseSequences();
    void sharedKeyValueGivesEachPairCountsFactors();
};

void TestAllocationSpeed::sharedWidthErrorsEqualTheDirectEvaluation()
{
    // Every (pairs, width) of every layer: the shared-width evaluation over every row and through W_o itself gives
    // the exhaustive single-layer model's error to float rounding.
    for (const char* name : {"stories260K", "aidreams260K"}) {
        const Fixture f = fixture(name, 2, 40);
        AllocationOptions o = exact(f.budget);
        const auto fast = measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o);
        o.exhaustive = true;
        const auto slow = measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o);
        QCOMPARE(fast.size(), slow.size());
        int compared = 0;
        for (std::size_t l = 0; l < fast.size(); ++l) {
            const auto a = costs(fast[l]), b = costs(slow[l]);
            QCOMPARE(a.size(), b.size());
            for (const auto& [key, cost] : b) {
                QVERIFY(a.count(key));
                const double got = a.at(key);
                QVERIFY2(std::abs(got - cost) <= 1e-4 * cost + 1e-9,
                         qPrintable(QStringLiteral("%1 layer %2 pairs %3 width %4: %5 vs %6").arg(QString::fromLatin1(name)).arg(l)
                                        .arg(key.first).arg(key.second).arg(got, 0, 'g', 9).arg(cost, 0, 'g', 9)));
                ++compared;
            }
        }
        QVERIFY(compared > 20);
    }
}

void TestAllocationSpeed::coarseToFineFindsTheExhaustiveOptimum()
{
    // A coarse grid of step 2, and of step 4 where the heads have 8 pairs (3 coarse counts: coarser than the default's
    // 5 of 33 on a head of 64), refined around the hull finds the optimum of measuring every pair count, on every
    // shipped real model at a 75% saving.
    for (const char* name : {"stories260K", "aidreams260K", "xs260K", "poem5L"}) {
        const Fixture f = fixture(name, 2, 32);
        AllocationOptions o = exact(f.budget);
        const Allocation every = allocateBudget(measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o), f.budget);
        for (std::int64_t step : {2, 4}) {
            if (step > f.model.config.headDim / 4)
                continue;
            o.pairStep = step;
            const auto coarse = measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o);
            const Allocation refined = allocateBudget(coarse, f.budget);
            QVERIFY2(refined.pairs == every.pairs && refined.latent == every.latent, qPrintable(QString("%1, step %2").arg(name).arg(step)));
            QCOMPARE(refined.totalCost, every.totalCost);
        }
    }
}

void TestAllocationSpeed::defaultFastPathChoosesTheExhaustiveSplit()
{
    // The default fast path (sampled rows, sketched output error, coarse-to-fine pairs) chooses a per-layer split
    // that is as good as the exhaustive optimum when both are costed by the exhaustive measurement.
    const Fixture f = fixture("stories260K", 4, 128);
    AllocationOptions o;
    o.budget = f.budget;
    o.queryRows = 32; // a sixteenth of the rows in a quarter of the sequences, as the defaults (256 rows in 4) on a
    o.sequences = 1;  // 16 x 256 calibration
    const Allocation fast = allocateBudget(measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o), f.budget);
    o.exhaustive = true;
    const auto exhaustive = measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o);
    const Allocation best = allocateBudget(exhaustive, f.budget);
    double fastCost = 0.0;
    for (std::size_t l = 0; l < exhaustive.size(); ++l) {
        const auto c = costs(exhaustive[l]);
        QVERIFY(c.count({fast.pairs[l], fast.latent[l]}));
        fastCost += c.at({fast.pairs[l], fast.latent[l]});
    }
    QVERIFY(fast.elements <= f.budget);
    QVERIFY2(fastCost <= 1.02 * best.totalCost, qPrintable(QStringLiteral("fast split %1, exhaustive optimum %2").arg(fastCost).arg(best.totalCost)));
    qInfo("exhaustive cost of the fast split %.6g, exhaustive optimum %.6g (%s)", fastCost, best.totalCost,
          fast.pairs == best.pairs && fast.latent == best.latent ? "same split" : "another split");
}

void TestAllocationSpeed::fixedPairsMeasureOnlyThatCount()
{
    const Fixture f = fixture("stories260K", 2, 32);
    AllocationOptions o;
    o.budget = f.budget;
    o.onlyPairs = 1;
    for (const auto& layer : measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o)) {
        QVERIFY(!layer.empty());
        for (const auto& a : layer)
            QCOMPARE(a.pairs, std::int64_t(1));
    }
}

// The allocation takes each layer's input covariance from the analysis instead of accumulating it again, but only
// when the analysis measured exactly the calibration tokens the allocation uses.
void TestAllocationSpeed::analysisCovarianceServesOnlyItsOwnTokens()
{
    Fixture f = fixture("stories260K", 3, 24);
    AnalysisOptions a;
    a.settings.strategy = RopeStrategy::RotationLoss;
    a.settings.activationAware = true; // keeps every layer's input covariance
    a.spectra = false;
    a.activationSpectra = false;
    f.analysis = analyzeModel(cpuBackend(), f.model, f.calibration, "test", a);
    for (const auto& layer : f.analysis.layers)
        QCOMPARE(layer.inputCovariance.rows(), f.model.config.hidden);
    AllocationOptions o;
    o.budget = f.budget;
    o.onlyPairs = 1; // the covariance enters every pair count alike
    AnalysisResult without = f.analysis;
    for (auto& layer : without.layers)
        layer.inputCovariance = MatrixXdRM();
    const auto reused = measureAllocationCandidates(cpuBackend(), f.model, f.analysis, f.calibration, o);
    const auto accumulated = measureAllocationCandidates(cpuBackend(), f.model, without, f.calibration, o);
    QCOMPARE(reused.size(), accumulated.size());
    for (std::size_t l = 0; l < reused.size(); ++l) {
        const auto a0 = costs(reused[l]), a1 = costs(accumulated[l]);
        QCOMPARE(a0.size(), a1.size());
        for (const auto& [key, cost] : a0)
            QVERIFY2(std::abs(cost - a1.at(key)) <= 1e-6 * std::abs(cost) + 1e-12, qPrintable(QStringLiteral("layer %1").arg(l)));
    }
    // A different covariance in the analysis is used for its own tokens (the costs move) ...
    AnalysisResult other = f.analysis;
    for (auto& layer : other.layers)
        layer.inputCovariance = MatrixXdRM::Identity(f.model.config.hidden, f.model.config.hidden);
    const auto withOther = measureAllocationCandidates(cpuBackend(), f.model, other, f.calibration, o);
    bool moved = false;
    for (std::size_t l = 0; l < withOther.size(); ++l)
        for (const auto& [key, cost] : costs(withOther[l]))
            moved = moved || std::abs(cost - costs(accumulated[l]).at(key)) > 1e-3 * std::abs(cost);
    QVERIFY(moved);
    // ... and ignored for other tokens: the calibration without its last sequence.
    CalibrationSet fewer = f.calibration;
    fewer.sequences.pop_back();
    const auto ignored = measureAllocationCandidates(cpuBackend(), f.model, other, fewer, o);
    const auto direct = measureAllocationCandidates(cpuBackend(), f.model, without, fewer, o);
    for (std::size_t l = 0; l < ignored.size(); ++l) {
        const auto a0 = costs(ignored[l]), a1 = costs(direct[l]);
        QCOMPARE(a0.size(), a1.size());
        for (const auto& [key, cost] : a0)
            QCOMPARE(cost, a1.at(key));
    }
}

// Evaluating the rows of some sequences only (CandidateErrorOptions::sequences) is the evaluation of those sequences
// alone, scaled to every row: sequences 1 and 3 of four when two are asked for.
void TestAllocationSpeed::sequenceSubsetIsTheErrorOfThoseSequences()
{
    const Fixture f = fixture("stories260K", 4, 48);
    const ModelConfig& c = f.model.config;
    const LayerWeights& w = f.model.layers[1];
    const Transformer layer(singleLayerModel(f.model, w, std::nullopt), MlaForm::Expanded);
    const Transformer t(f.model);
    std::vector<MatrixRM> x, target;
    std::int64_t total = 0;
    for (const auto& s : f.calibration.sequences) {
        MatrixRM h = t.embed(s), xs, out;
        t.runLayer(0, h);
        rmsNormRows(h, w.attnNorm, static_cast<float>(c.rmsEps), xs);
        linear(w.o, w.oBias, layer.attentionContext(0, xs), out);
        total += xs.rows();
        x.push_back(std::move(xs));
        target.push_back(std::move(out));
    }
    MlaLayerConfig m;
    m.keptPairs = f.analysis.layers[1].selection;
    m.method = LatentMethod::Joint;
    m.latentK = 12;
    const ConvertedAttention a = convertAttention(cpuBackend(), c, w, m, ConversionSettings{}, nullptr, {});
    const std::vector<std::int64_t> widths{3, 7, 12};
    CandidateErrorOptions o;
    o.sequences = 2;
    const std::vector<double> subset = LayerCandidateErrors(c, w, x, target, o).errors(a, m.keptPairs, widths);
    const std::vector<MatrixRM> x2{x[1], x[3]}, target2{target[1], target[3]};
    const std::vector<double> alone = LayerCandidateErrors(c, w, x2, target2, {}).errors(a, m.keptPairs, widths);
    const double toAll = static_cast<double>(total) / static_cast<double>(x[1].rows() + x[3].rows());
    for (std::size_t i = 0; i < widths.size(); ++i) {
        QVERIFY(alone[i] > 0.0);
        QVERIFY2(std::abs(subset[i] - toAll * alone[i]) <= 1e-9 * subset[i], qPrintable(QStringLiteral("width %1: %2 vs %3").arg(widths[i]).arg(subset[i]).arg(toAll * alone[i])));
    }
    // The other two sequences give other errors: the subset is not all of them.
    o.sequences = 0;
    const std::vector<double> all = LayerCandidateErrors(c, w, x, target, o).errors(a, m.keptPairs, widths);
    QVERIFY(std::abs(all[2] - subset[2]) > 1e-6 * all[2]);
}

// The allocation decomposes every pair count's joint matrix from one whitened [K; V] and its Gram per layer: the same
// factors as decomposing each pair count's own matrix (a wrong row, e.g. the values' offset, would change them whole).
void TestAllocationSpeed::sharedKeyValueGivesEachPairCountsFactors()
{
    ModelConfig c; // keys and values (2 x 16 rows) narrower than the hidden width (64): the shared path applies
    c.hidden = 64;
    c.layers = 1;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 8;
    c.ffn = 96;
    c.vocab = 64;
    c.maxPositions = 32;
    const Model model = test::randomModel(c, 5);
    const LayerWeights& w = model.layers[0];
    std::mt19937 rng(3);
    std::normal_distribution<double> normal;
    MatrixXdRM x(400, c.hidden);
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < x.cols(); ++j)
            x(i, j) = normal(rng) * (1.0 + 0.2 * static_cast<double>(j % 7)); // anisotropic: whitening matters
    const MatrixXdRM covariance = x.transpose() * x / static_cast<double>(x.rows());
    const MatrixXdRM whitening = attentionWhitening(covariance);
    const WhitenedKeyValue kv = whitenedKeyValue(cpuBackend(), w, whitening);
    QCOMPARE(kv.product.rows(), 2 * c.kvDim());
    ConversionSettings s;
    s.activationAware = true;
    for (std::int64_t p = 0; p <= c.headDim / 2; ++p) {
        MlaLayerConfig m;
        m.keptPairs = selectLayerPairs(c, RopeStrategy::Low, p, 0, nullptr);
        m.method = LatentMethod::Joint;
        m.latentK = std::min<std::int64_t>(12, 2 * c.kvDim() - 2 * p * c.kvHeads);
        AttentionConversionShortcuts own, shared;
        own.whitening = shared.whitening = &whitening;
        shared.keyValue = &kv;
        const ConvertedAttention a = convertAttention(cpuBackend(), c, w, m, s, &covariance, {}, own);
        const ConvertedAttention b = convertAttention(cpuBackend(), c, w, m, s, &covariance, {}, shared);
        for (const auto& [x0, x1] : {std::pair{&a.downKv, &b.downKv}, std::pair{&a.upK, &b.upK}, std::pair{&a.upV, &b.upV}}) {
            QCOMPARE(x1->rows(), x0->rows());
            QCOMPARE(x1->cols(), x0->cols());
            if (x0->size() == 0)
                continue; // every pair kept: no position-free key rows
            const double scale = std::max(1.0, static_cast<double>(x0->cwiseAbs().maxCoeff()));
            QVERIFY2((*x0 - *x1).cwiseAbs().maxCoeff() <= 1e-5 * scale, qPrintable(QString("pairs %1").arg(p)));
        }
        QVERIFY(std::abs(a.factorSquaredResidual - b.factorSquaredResidual) <= 1e-9 * std::max(1.0, a.factorSquaredNorm));
    }
}

QTEST_GUILESS_MAIN(TestAllocationSpeed)
#include "tst_allocation_speed.moc"
