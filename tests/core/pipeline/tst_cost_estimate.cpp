// The estimates shown next to Analyze and Convert before they start: a forward probe measured on the model, scaled by
// a cost model. Checked against what they model (the parts a step has, linear growth with the calibration tokens, no
// calibration when an analysis exists) and against a real analysis of the demo model timed in the same process (the
// probe is measured in this process too, so a slow machine or a sanitizer slows both alike).

#include "common/test_support.h"
#include "pipeline/analyse.h"
#include "pipeline/cost_estimate.h"
#include "pipeline/open_model.h"
#include "conversion/presets.h"

#include <QtTest>

#include <chrono>

using namespace mla;
using namespace mla::pipeline;

namespace {

OpenedModel costDemo()
{
    return openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
}

bool hasPart(const CostEstimate& e, const std::string& start)
{
    for (const std::string& p : e.parts)
        if (p.rfind(start, 0) == 0)
            return true;
    return false;
}

} // namespace

class TestCostEstimate : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void probeMeasuresTheForward()
    {
        const OpenedModel m = costDemo();
        const ForwardProbe p = probeForward(m, ExecutionContext(), 16);
        QCOMPARE(p.device, std::string("cpu"));
        QCOMPARE(p.tokens, std::int64_t(16)); // the demo's context (512) has room for the warm-up and the probe
        QVERIFY(p.prefillSecondsPerToken > 0 && p.decodeSecondsPerToken > 0 && p.flopsPerSecond > 0);
        QVERIFY(std::isfinite(p.flopsPerSecond));
        QVERIFY(p.statisticsWhileSampling); // the CPU's batched decode can be observed
    }

    void estimatesHaveTheStepsParts()
    {
        const OpenedModel m = costDemo();
        const ModelConfig& c = m.model->config;
        const ForwardProbe p{"cpu", 16, 1e-4, 2e-4, 1e9};
        Settings s;
        s.calibration.samples = 8;
        s.calibration.sequenceLength = 64;
        const CostEstimate a = estimateAnalysis(c, m.model->parameterCount(), s, p);
        QVERIFY(hasPart(a, "sampling 512 calibration tokens") && hasPart(a, "statistics pass") && hasPart(a, "spectra of 5 layers"));
        QVERIFY(a.seconds > 0 && a.bytes > 0);
        QVERIFY(a.basis.find("Measured probe") != std::string::npos && a.basis.find("cost model") != std::string::npos);
        // Measured while sampling, the statistics cost no forward pass: 512 tokens at the prefill rate (51 ms) less.
        ForwardProbe observed = p;
        observed.statisticsWhileSampling = true;
        const CostEstimate fused = estimateAnalysis(c, m.model->parameterCount(), s, observed);
        QVERIFY(hasPart(fused, "statistics measured while sampling") && !hasPart(fused, "statistics pass"));
        QVERIFY(std::abs(a.seconds - fused.seconds - 512 * 1e-4) < 1e-9);
        // Sampling: 64 steps of 8 sequences, each step the larger of a decode step (0.2 ms) and 8 tokens at the prefill
        // rate (0.8 ms): 51 ms. Twice the samples: 64 steps of 1.6 ms.
        s.calibration.samples = 16;
        const CostEstimate a2 = estimateAnalysis(c, m.model->parameterCount(), s, p);
        QVERIFY(hasPart(a2, "sampling 1024 calibration tokens"));
        QVERIFY(a2.seconds > a.seconds + 0.9 * 64 * (1.6e-3 - 0.8e-3));

        // Convert with the best preset: without an analysis it calibrates and allocates; with one it only allocates.
        applyPreset("best", s.conversion);
        const CostEstimate alone = estimateConversion(c, m.model->parameterCount(), s, 0, p);
        QVERIFY(hasPart(alone, "sampling") && hasPart(alone, "allocation") && hasPart(alone, "sequential pass"));
        const CostEstimate analysed = estimateConversion(c, m.model->parameterCount(), s, 1024, p);
        QVERIFY(!hasPart(analysed, "sampling") && hasPart(analysed, "allocation"));
        QVERIFY(analysed.seconds < alone.seconds);
        // Memory: the converted copy, the sequential pass's three float32 copies of the calibration inputs, and the
        // original's layer inputs kept for the passes (every layer but the first, at most a third of the model).
        const double params = static_cast<double>(m.model->parameterCount());
        const double kept = std::min(static_cast<double>(c.layers - 1) * 1024.0 * static_cast<double>(c.hidden) * 4.0, params * 4.0 / 3.0);
        QCOMPARE(analysed.bytes, static_cast<std::uint64_t>(params * 4.0) + static_cast<std::uint64_t>(1024.0 * static_cast<double>(c.hidden) * 12.0)
                                     + static_cast<std::uint64_t>(kept));
        // Pairs that need no scores and no calibration pass: one pass of decompositions, nothing else.
        applyPreset("paper", s.conversion);
        s.conversion.strategy = RopeStrategy::High;
        const CostEstimate plain = estimateConversion(c, m.model->parameterCount(), s, 0, p);
        QCOMPARE(plain.parts.size(), std::size_t(1));
        QVERIFY(hasPart(plain, "decompositions of 5 layers"));
        QVERIFY(plain.bytes >= static_cast<std::uint64_t>(m.model->parameterCount()) * 4u); // the converted copy
        // The randomized decomposition adds its check: the first layer decomposed both ways, two layers' worth.
        s.conversion.decomposition = DecompositionMethod::Randomized;
        const CostEstimate randomized = estimateConversion(c, m.model->parameterCount(), s, 0, p);
        QVERIFY(hasPart(randomized, "check of the randomized decomposition on layer 0"));
        QVERIFY(std::abs(randomized.seconds - plain.seconds * (1.0 + 2.0 / static_cast<double>(c.layers))) < 1e-9 * plain.seconds);
    }

    void analysisEstimateIsTheRightOrder()
    {
        const OpenedModel m = costDemo();
        Settings s;
        s.calibration.samples = 4;
        s.calibration.sequenceLength = 64;
        const ForwardProbe p = probeForward(m, ExecutionContext(), 16);
        const CostEstimate e = estimateAnalysis(m.model->config, m.model->parameterCount(), s, p);
        const auto start = std::chrono::steady_clock::now();
        const AnalysisPtr a = analyse(m, s, ExecutionContext());
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        QVERIFY(a);
        // A tiny model's steps are dominated by fixed costs a per-token scale cannot see, so the bound is loose: it
        // catches a unit or scaling error (a thousandfold), not the model's constants.
        qInfo("demo analysis: estimated %.3f s, measured %.3f s", e.seconds, seconds);
        QVERIFY2(e.seconds < 50.0 * seconds + 0.5 && seconds < 50.0 * e.seconds + 0.5, qPrintable(QStringLiteral("estimate %1 s, measured %2 s").arg(e.seconds).arg(seconds)));
    }
};

QTEST_MAIN(TestCostEstimate)
#include "tst_cost_estimate.moc"
