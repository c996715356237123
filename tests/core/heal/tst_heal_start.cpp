// Choosing the start a heal begins from (`--heal-start auto`): each candidate is healed briefly, the one with the
// lower held-out KL wins, and the full heal of the winner is exactly the heal of that start.
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "heal/heal_start.h"

#include <QtTest>

using namespace mla;

namespace {

Model convert(const Model& original, std::int64_t pairs, double saving)
{
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = pairs;
    s.targetSaving = saving;
    return convertModel(cpuBackend(), original, planConversion(original.config, s, selectPairs(original.config, s, nullptr)));
}

HealOptions quickStartOptions()
{
    HealOptions o;
    o.steps = 16;
    o.evaluateEvery = 4;
    o.batchSequences = 2;
    o.heldOutFraction = 0.25;
    o.data.tokens = 8 * 48;
    o.data.sequenceLength = 48;
    return o;
}

bool sameAttention(const Model& a, const Model& b)
{
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        for (auto t : {&LayerWeights::q, &LayerWeights::kRope, &LayerWeights::downKv, &LayerWeights::upK, &LayerWeights::upV, &LayerWeights::o}) {
            const Tensor& x = a.layers[l].*t;
            const Tensor& y = b.layers[l].*t;
            if (x.bytes() != y.bytes() || (x.bytes() && std::memcmp(x.data(), y.data(), x.bytes()) != 0))
                return false;
        }
    }
    return true;
}

} // namespace

class TestHealStart : public QObject {
    Q_OBJECT
private slots:
    void namesRoundTrip();
    void autoPicksTheLowerProbeKlAndHealsIt();
    void probeBudgetDefaults();
};

void TestHealStart::namesRoundTrip()
{
    for (HealStart s : {HealStart::Auto, HealStart::Paper, HealStart::Allocated}) {
        HealStart back = HealStart::Paper;
        QVERIFY(parseHealStart(healStartName(s), back));
        QCOMPARE(back, s);
    }
    HealStart x;
    QVERIFY(!parseHealStart("best", x));
}

void TestHealStart::autoPicksTheLowerProbeKlAndHealsIt()
{
    const Model original = test::loadRealModel("stories260K");
    // Two starts with the same cache: one RoPE pair and a wider latent, or two pairs and a narrower one.
    const Model onePair = convert(original, 1, 0.5);
    const Model twoPairs = convert(original, 2, 0.5);
    QCOMPARE(onePair.config.kvElementsPerToken(), twoPairs.config.kvElementsPerToken());
    const HealOptions options = quickStartOptions();
    const HealData data = prepareHealData(Transformer(original), nullptr, options);
    const std::vector<HealStartCandidate> candidates{{"one pair", &onePair}, {"two pairs", &twoPairs}};

    std::vector<HealResult> probes;
    const HealStartChoice choice = chooseHealStart(original, candidates, data, options, 6, {}, &probes);
    QCOMPARE(choice.probes.size(), std::size_t(2));
    QCOMPARE(choice.probeSteps, std::int64_t(6));
    const std::size_t lower = choice.probes[1].klProbe < choice.probes[0].klProbe ? 1 : 0;
    QCOMPARE(choice.chosen, lower);
    for (std::size_t i = 0; i < 2; ++i) {
        QCOMPARE(choice.probes[i].name, candidates[i].name);
        QCOMPARE(choice.probes[i].klProbe, probes[i].report.after->kl);
        QCOMPARE(choice.probes[i].klUnhealed, probes[i].report.before->kl);
        QVERIFY(choice.probes[i].klProbe < choice.probes[i].klUnhealed);
        QCOMPARE(probes[i].report.layers.front().steps, std::int64_t(6));
    }

    // The full heal of the winner is the plain heal of that start (healing is deterministic).
    const HealFromStart full = healFromBestStart(original, candidates, data, options, 6);
    QCOMPARE(full.choice.chosen, choice.chosen);
    const HealResult direct = healModel(original, *candidates[choice.chosen].model, data, options);
    QVERIFY(sameAttention(full.result.model, direct.model));
    QCOMPARE(full.result.report.after->kl, direct.report.after->kl);
    // A probe as long as the heal is the heal itself.
    const HealFromStart reused = healFromBestStart(original, candidates, data, options, options.steps);
    QVERIFY(sameAttention(reused.result.model, healModel(original, *candidates[reused.choice.chosen].model, data, options).model));

    QVERIFY_THROWS_EXCEPTION(Error, chooseHealStart(original, {}, data, options, 6));
}

void TestHealStart::probeBudgetDefaults()
{
    QCOMPARE(defaultProbeSteps(1000), std::int64_t(1000));
    QCOMPARE(defaultProbeSteps(10), std::int64_t(10));
}

QTEST_APPLESS_MAIN(TestHealStart)
#include "tst_heal_start.moc"
