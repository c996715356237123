// pipeline::healConversion when cancelled: with KeepHealedLayers and a layer finished, the conversion comes back with
// the layers healed so far (the GUI's "Stop, keep"); with DiscardAll, or before any layer is finished, Cancelled.
#include "common/test_support.h"
#include "pipeline/heal.h"
#include "pipeline/open_model.h"

#include <QtTest>

#include <atomic>

using namespace mla;
using namespace mla::pipeline;

class TestHealPipeline : public QObject {
    Q_OBJECT
    OpenedModel m_demo;
    std::optional<ConversionOutcome> m_conversion;
    HealRequest m_request;
    std::optional<HealData> m_data;

    // Heals with a cancel raised at `layer`, `step`; returns the result or nothing when Cancelled was thrown.
    std::optional<HealedConversion> healCancelledAt(HealCancelPolicy policy, std::int64_t layer, std::int64_t step)
    {
        HealRequest request = m_request;
        request.options.onCancel = policy;
        std::atomic<bool> cancel{false};
        const ExecutionContext context(nullptr, JobControl(&cancel, {}));
        try {
            return healConversion(m_demo, *m_conversion, request, *m_data, context, [&](const HealProgress& p, const std::string&) {
                if (p.layer == layer && p.step == step)
                    cancel = true;
            });
        } catch (const Cancelled&) {
            return std::nullopt;
        }
    }

private Q_SLOTS:
    void initTestCase()
    {
        m_demo = openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        Settings s;
        s.conversion.latentDim = 16;
        m_conversion = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        m_request.options.steps = 4;
        m_request.options.batchSequences = 2;
        m_request.options.data.tokens = 8 * 24;
        m_request.options.data.sequenceLength = 24;
        m_request.options.measureModel = false;
        m_data = prepareHealing(m_demo, m_request, ExecutionContext());
    }

    void keepReturnsTheLayersHealedSoFar()
    {
        const auto healed = healCancelledAt(HealCancelPolicy::KeepHealedLayers, 2, 2);
        QVERIFY(healed.has_value());
        const HealReport& r = healed->heal.healed.report;
        QVERIFY(r.cancelled);
        QCOMPARE(r.layersHealed, std::int64_t(2));
        QVERIFY(healed->conversion.heal.has_value());
        QCOMPARE(healed->conversion.heal->layersHealed, std::int64_t(2));
        QVERIFY(!healed->notes.empty() && healed->notes.back().find("2 of 5 layers healed") != std::string::npos);
        // Layers 1 and 2 as a heal that ran to the end made them (the same seed: the same bits), the others the
        // conversion's own.
        const HealedConversion full = healConversion(m_demo, *m_conversion, m_request, *m_data, ExecutionContext());
        QVERIFY(!full.heal.healed.report.cancelled);
        const Model& m = *healed->conversion.converted;
        const Model& f = *full.conversion.converted;
        const Model& c = *m_conversion->converted;
        for (std::size_t l = 0; l < c.layers.size(); ++l) {
            const Model& expected = l < 2 ? f : c;
            for (auto t : {&LayerWeights::q, &LayerWeights::downKv, &LayerWeights::upK, &LayerWeights::upV, &LayerWeights::o})
                QVERIFY2((m.layers[l].*t).toFloats() == (expected.layers[l].*t).toFloats(), qPrintable(QString::number(l)));
        }
    }

    void discardOrNothingFinishedThrowsCancelled()
    {
        QVERIFY(!healCancelledAt(HealCancelPolicy::DiscardAll, 2, 2));
        QVERIFY(!healCancelledAt(HealCancelPolicy::KeepHealedLayers, 0, 2));
    }
};

QTEST_APPLESS_MAIN(TestHealPipeline)
#include "tst_heal.moc"
