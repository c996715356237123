#include "analysis/rope_selection.h"
#include "common/test_support.h"

#include <QtTest>

using namespace mla;

namespace {

ModelConfig config(std::int64_t headDim, std::int64_t kvHeads = 2)
{
    ModelConfig c;
    c.hidden = 64;
    c.ffn = 64;
    c.layers = 1;
    c.heads = 2 * kvHeads;
    c.kvHeads = kvHeads;
    c.headDim = headDim;
    c.vocab = 16;
    return c;
}

} // namespace

class TestRopeSelection : public QObject {
    Q_OBJECT
private slots:
    void fixedStrategies_data();
    void fixedStrategies();
    void twoNormTakesTopScoresPerKvHeadWithStableTies();
    void uniformRejectsOverrun();
    void defaultPairs();
};

void TestRopeSelection::fixedStrategies_data()
{
    QTest::addColumn<int>("strategy");
    QTest::addColumn<int>("pairs");
    QTest::addColumn<int>("start");
    QTest::addColumn<std::vector<int>>("expected");
    // head 16 = 8 pairs
    QTest::newRow("high 2") << int(RopeStrategy::High) << 2 << 0 << std::vector<int>{0, 1};
    QTest::newRow("low 2") << int(RopeStrategy::Low) << 2 << 0 << std::vector<int>{6, 7};
    QTest::newRow("uniform 2") << int(RopeStrategy::Uniform) << 2 << 0 << std::vector<int>{0, 4};
    QTest::newRow("uniform 4 start 1") << int(RopeStrategy::Uniform) << 4 << 1 << std::vector<int>{1, 3, 5, 7};
    QTest::newRow("uniform 8") << int(RopeStrategy::Uniform) << 8 << 0 << std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7};
    QTest::newRow("high 0") << int(RopeStrategy::High) << 0 << 0 << std::vector<int>{};
}

void TestRopeSelection::fixedStrategies()
{
    QFETCH(int, strategy);
    QFETCH(int, pairs);
    QFETCH(int, start);
    QFETCH(std::vector<int>, expected);
    const auto sel = selectLayerPairs(config(16), static_cast<RopeStrategy>(strategy), pairs, start, nullptr);
    QCOMPARE(sel.size(), std::size_t(2));
    QCOMPARE(sel[0], expected);
    QCOMPARE(sel[1], expected);
}

void TestRopeSelection::twoNormTakesTopScoresPerKvHeadWithStableTies()
{
    LayerRopeScores scores;
    scores.perKvHead.resize(2, 4);
    scores.perKvHead << 0.1, 0.9, 0.5, 0.9, //
        1.0, 1.0, 1.0, 1.0;                 // all tied: lower j first
    scores.rotationLoss = scores.perKvHead;
    const auto sel = selectLayerPairs(config(8), RopeStrategy::TwoNorm, 2, 0, &scores);
    QCOMPARE(sel[0], (std::vector<int>{1, 3}));
    QCOMPARE(sel[1], (std::vector<int>{0, 1}));
    QVERIFY_THROWS_EXCEPTION(Error, selectLayerPairs(config(8), RopeStrategy::TwoNorm, 2, 0, nullptr));
}

void TestRopeSelection::uniformRejectsOverrun()
{
    QVERIFY_THROWS_EXCEPTION(Error, selectLayerPairs(config(16), RopeStrategy::Uniform, 2, 5, nullptr));
    QVERIFY_THROWS_EXCEPTION(Error, selectLayerPairs(config(16), RopeStrategy::High, 9, 0, nullptr));
}

void TestRopeSelection::defaultPairs()
{
    QCOMPARE(defaultRopePairs(config(8)), std::int64_t(1));
    QCOMPARE(defaultRopePairs(config(16)), std::int64_t(1));
    QCOMPARE(defaultRopePairs(config(64)), std::int64_t(4));
    QCOMPARE(defaultRopePairs(config(128)), std::int64_t(8));
}

QTEST_APPLESS_MAIN(TestRopeSelection)
#include "tst_rope_selection.moc"
