// The rules that keep a settings value consistent while it is edited, as plain functions without Qt: per-layer widths
// follow the locks, global moves leave locked layers alone, an allocation is reset when its budget moves, a new model
// starts from its defaults, the allocation budget, and the locks a schema-1 session implies.
#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "settings/settings_rules.h"

#include <QtTest>

using namespace mla;

namespace {

Settings fresh()
{
    return defaultsFor(Settings(), test::sixLayerShape());
}

} // namespace

class TestSettingsRules : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void defaultsForAModel()
    {
        Settings s;
        s.conversion.strategy = RopeStrategy::Low;
        s.conversion.ropePairs = 7;
        s.conversion.latentDim = 99;
        s.conversion.latentPerLayer = {1, 2, 3};
        s.conversion.uniformStart = 40;
        s.conversion.targetSaving = 3.0;
        s.conversion.kvBudget = 1234;
        s.calibration.samples = 3;
        const Settings d = defaultsFor(s, test::sixLayerShape());
        QCOMPARE(d.conversion.strategy, RopeStrategy::Low); // a model-independent choice stays
        QCOMPARE(d.calibration.samples, std::int64_t(3));
        QCOMPARE(d.conversion.ropePairs, std::int64_t(-1));
        QCOMPARE(d.conversion.latentDim, std::int64_t(-1));
        QVERIFY(d.conversion.latentPerLayer.empty());
        QCOMPARE(d.conversion.uniformStart, std::int64_t(15));
        QCOMPARE(d.conversion.targetSaving, 0.75);
        QCOMPARE(d.conversion.kvBudget, std::int64_t(-1));
        QCOMPARE(d.lockedLayers, std::vector<bool>(6, false));
    }

    void globalAndLayerLatents()
    {
        const ModelConfig c = test::sixLayerShape();
        Settings s = fresh();
        // 75% of 2 * 4 * 32 = 256 elements per layer leaves 64; 2 pairs (d_h / 16) of 4 KV heads take 16 of them.
        QCOMPARE(globalLatent(s.conversion, c), std::int64_t(48));
        QCOMPARE(layerLatents(s.conversion, c), std::vector<std::int64_t>(6, 48));
        s.conversion.method = LatentMethod::Split;
        QCOMPARE(layerLatents(s.conversion, c), std::vector<std::int64_t>(6, 48)); // both latents together
        s.conversion.method = LatentMethod::None;
        QCOMPARE(globalLatent(s.conversion, c), std::int64_t(0));
        s = fresh();
        s.conversion.targetSaving = 0.99; // unreachable with 2 pairs
        QCOMPARE(globalLatent(s.conversion, c), std::int64_t(0));
        QVERIFY(layerLatents(s.conversion, c).empty());
    }

    void lockedLayerKeepsItsWidth()
    {
        const ModelConfig c = test::sixLayerShape();
        Settings s = withGlobalLatent(fresh(), c, 40);
        QVERIFY(s.conversion.latentPerLayer.empty()); // nothing locked: no per-layer list
        s = withLayerLatent(s, c, 2, 10);
        QVERIFY(s.lockedLayers[2]);
        QCOMPARE(s.conversion.latentPerLayer, (std::vector<std::int64_t>{40, 40, 10, 40, 40, 40}));
        s = withGlobalLatent(s, c, 50);
        QCOMPARE(s.conversion.latentPerLayer, (std::vector<std::int64_t>{50, 50, 10, 50, 50, 50}));
        s = withTargetSaving(s, c, 0.8);
        QCOMPARE(s.conversion.latentDim, std::int64_t(-1));
        QCOMPARE(s.conversion.latentPerLayer[2], std::int64_t(10));
        QCOMPARE(s.conversion.latentPerLayer[0], globalLatent(s.conversion, c));
        // An unrelated edit, normalised, keeps the hand-set width (the fault after reopening a session).
        Settings edited = s;
        edited.conversion.sigma = SigmaPlacement::Sqrt;
        normalise(edited, c);
        QCOMPARE(edited.conversion.latentPerLayer, s.conversion.latentPerLayer);
        // Unlocked, the layer follows the global width again and the list goes.
        s = withLayerLocked(s, c, 2, false);
        QVERIFY(!s.anyLocked());
        QVERIFY(s.conversion.latentPerLayer.empty());
        // Out of range: no change.
        QVERIFY(withLayerLatent(s, c, 6, 10) == s);
        QVERIFY(withLayerLatent(s, c, 1, 0) == s);
    }

    void allocationListsAreTheAllocations()
    {
        const ModelConfig c = test::sixLayerShape();
        Settings s = fresh();
        s.conversion.allocate = true;
        Allocation a;
        a.pairs = {1, 2, 3, 2, 1, 2};
        a.latent = {30, 40, 50, 40, 30, 40};
        s = withAllocation(s, a);
        QCOMPARE(s.conversion.ropePairsPerLayer, a.pairs);
        QCOMPARE(s.conversion.latentPerLayer, a.latent);
        normalise(s, c); // under allocation the lists stay
        QCOMPARE(s.conversion.latentPerLayer, a.latent);
        QVERIFY(!allocationPending(s.conversion));
        // Lock a layer at its allocated width, then move the budget: the allocation resets to uniform layers, the
        // locked one keeps its width.
        s = withLayerLocked(s, c, 2, true);
        s = withGlobalLatent(s, c, 44);
        QVERIFY(s.conversion.ropePairsPerLayer.empty());
        QCOMPARE(s.conversion.latentPerLayer, (std::vector<std::int64_t>{44, 44, 50, 44, 44, 44}));
        // Releasing the layer under allocation gives it the global width.
        s = withLayerLocked(s, c, 2, false);
        QCOMPARE(s.conversion.latentPerLayer[2], std::int64_t(44));
        Settings none = fresh();
        none.conversion.allocate = true;
        QVERIFY(allocationPending(none.conversion));
        s = withTargetSaving(none, c, 0.5);
        QVERIFY(s.conversion.latentPerLayer.empty());
        QVERIFY(allocationPending(s.conversion));
    }

    void allocationBudget_data()
    {
        QTest::addColumn<int>("budget");
        QTest::addColumn<int>("latent");
        QTest::addColumn<double>("saving");
        QTest::addColumn<int>("expected");
        // Original: 6 layers x 256 elements = 1536.
        QTest::newRow("explicit budget") << 700 << -1 << 0.75 << 700;
        QTest::newRow("target saving") << -1 << -1 << 0.75 << 384;
        QTest::newRow("target saving, rounded once") << -1 << -1 << 0.3 << 1075; // 0.7 * 1536 = 1075.2
        QTest::newRow("fixed width") << -1 << 40 << 0.75 << 6 * (40 + 16);
    }

    void allocationBudget()
    {
        QFETCH(int, budget);
        QFETCH(int, latent);
        QFETCH(double, saving);
        QFETCH(int, expected);
        Settings s = fresh();
        s.conversion.kvBudget = budget;
        s.conversion.latentDim = latent;
        s.conversion.targetSaving = saving;
        QCOMPARE(mla::allocationBudget(s, test::sixLayerShape()), std::int64_t(expected));
    }

    void fixedWidthBudgetCountsLockedLayers()
    {
        const ModelConfig c = test::sixLayerShape();
        Settings s = withLayerLatent(withGlobalLatent(fresh(), c, 40), c, 0, 100);
        QCOMPARE(mla::allocationBudget(s, c), std::int64_t(5 * (40 + 16) + (100 + 16)));
    }

    void locksOfSchemaOneSessions()
    {
        const ModelConfig c = test::sixLayerShape();
        ConversionSettings s = fresh().conversion;
        s.latentDim = 40;
        s.latentPerLayer = {40, 40, 10, 40, 40, 40};
        QCOMPARE(inferredLocks(s, c), (std::vector<bool>{false, false, true, false, false, false}));
        s.latentPerLayer = std::vector<std::int64_t>(6, 40);
        QVERIFY(inferredLocks(s, c).empty());
        s.allocate = true; // an allocation's lists are not locks
        s.latentPerLayer = {40, 40, 10, 40, 40, 40};
        QVERIFY(inferredLocks(s, c).empty());
        s.allocate = false;
        s.latentDim = -1;
        s.targetSaving = 0.99; // no global width: every listed width was set by hand
        QCOMPARE(inferredLocks(s, c), std::vector<bool>(6, true));
    }
};

QTEST_MAIN(TestSettingsRules)
#include "tst_settings_rules.moc"
