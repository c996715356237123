// The shared-RoPE mathematics: the frequency-error loss against a direct sum over query-key distances, the complex
// principal components as an exact change of basis across KV heads, and the choice of rope_theta and slots.
#include "common/test_support.h"
#include "conversion/rope_sharing.h"
#include "model/rope.h"
#include "numerics/random_fill.h"

#include <QtTest>

#include <cmath>

using namespace mla;

class TestRopeSharing : public QObject {
    Q_OBJECT
private slots:
    void frequencyErrorLossIsTheDistanceAverage();
    void componentsAreAnExactBasis();
    void exactLadderIsFound();
};

void TestRopeSharing::frequencyErrorLossIsTheDistanceAverage()
{
    for (std::int64_t n : {1, 7, 128, 1000}) {
        for (double delta : {1e-7, 1e-4, 0.01, 0.3, 1.0, 2.5}) {
            double sum = 0.0, weight = 0.0;
            for (std::int64_t d = 0; d < n; ++d) {
                sum += static_cast<double>(n - d) * (1.0 - std::cos(static_cast<double>(d) * delta));
                weight += static_cast<double>(n - d);
            }
            const double direct = sum / weight;
            const double closed = frequencyErrorLoss(delta, n);
            QVERIFY2(std::abs(closed - direct) <= 1e-9 + 1e-6 * direct,
                     (std::to_string(n) + " " + std::to_string(delta) + ": " + std::to_string(closed) + " vs " + std::to_string(direct)).c_str());
            QCOMPARE(frequencyErrorLoss(-delta, n), closed);
        }
    }
    QCOMPARE(frequencyErrorLoss(0.0, 100), 0.0);
}

void TestRopeSharing::componentsAreAnExactBasis()
{
    ModelConfig c;
    c.heads = 6;
    c.kvHeads = 3;
    c.headDim = 8;
    const std::int64_t T = 50;
    MatrixRM q(T, c.heads * c.headDim), k(T, c.kvHeads * c.headDim);
    fillGaussian(q, 3, 0);
    fillGaussian(k, 4, 0);
    RopePairStatistics stats = emptyRopePairStatistics(c);
    accumulateRopePairs(c, q, k, stats);
    const std::vector<RopeComponent> comps = ropeComponents(c, stats);
    QCOMPARE(comps.size(), std::size_t(12)); // 3 KV heads x 4 pairs
    const std::vector<float> freqs = ropeFrequencies(c.rope, c.headDim);
    for (std::int64_t j = 0; j < 4; ++j) {
        // sum_c up_c down_c^T = I over the components of one frequency: keys are rebuilt exactly from all of them.
        Eigen::MatrixXcd identity = Eigen::MatrixXcd::Zero(3, 3);
        for (const auto& comp : comps) {
            if (comp.pair != j)
                continue;
            QCOMPARE(comp.frequency, static_cast<double>(freqs[static_cast<std::size_t>(j)]));
            for (int g = 0; g < 3; ++g)
                for (int h = 0; h < 3; ++h)
                    identity(g, h) += comp.up[static_cast<std::size_t>(g)] * comp.down[static_cast<std::size_t>(h)];
        }
        QVERIFY((identity - Eigen::MatrixXcd::Identity(3, 3)).norm() < 1e-9);
    }
    for (std::size_t i = 1; i < comps.size(); ++i)
        QVERIFY(comps[i - 1].frequency > comps[i].frequency
                || (comps[i - 1].frequency == comps[i].frequency && comps[i - 1].energy >= comps[i].energy));
}

void TestRopeSharing::exactLadderIsFound()
{
    // Components on every other pair of a theta = 10000, d_h = 16 ladder (w_2i = 10000^(-i/4)): the 4-slot ladder of an
    // 8-wide head, theta'^(-i/4), holds them exactly with theta' = 10000; a weak component elsewhere stays position-free.
    std::vector<RopeComponent> layer;
    for (int j : {0, 2, 4, 6}) {
        RopeComponent c;
        c.pair = j;
        c.frequency = std::pow(10000.0, -2.0 * j / 16.0);
        c.energy = 1.0;
        layer.push_back(c);
    }
    RopeComponent weak;
    weak.pair = 7;
    weak.frequency = std::pow(10000.0, -14.0 / 16.0);
    weak.energy = 1e-6;
    layer.push_back(weak);
    const SharedRopeLayout layout = chooseSharedRope({layer}, 8, 256);
    QVERIFY2(std::abs(layout.theta - 10000.0) < 1e-6, std::to_string(layout.theta).c_str());
    QCOMPARE(layout.slotComponents[0], (std::vector<int>{0, 1, 2, 3}));
    QVERIFY(layout.cost < 1e-6);
}

QTEST_GUILESS_MAIN(TestRopeSharing)
#include "tst_rope_sharing.moc"
