#include "common/test_support.h"

#include "numerics/decompositions.h"
#include "util/error.h"

#include <Eigen/QR>

#include <atomic>
#include <cmath>
#include <random>

using namespace mla;

namespace {

Eigen::MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    Eigen::MatrixXd m(rows, cols);
    for (Eigen::Index c = 0; c < cols; ++c)
        for (Eigen::Index r = 0; r < rows; ++r)
            m(r, c) = normal(rng);
    return m;
}

Eigen::MatrixXd orthonormalColumns(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(gaussian(rows, cols, seed));
    return qr.householderQ() * Eigen::MatrixXd::Identity(rows, cols);
}

// M = U diag(s) V^T with random orthonormal U, V; the known V is kept for subspace checks.
struct Known {
    MatrixRM m;
    Eigen::MatrixXd v;          // [cols, s.size()]
    std::vector<double> s;      // descending
    double tail(std::size_t k) const // sqrt(sum_{i >= k} s_i^2)
    {
        double sum = 0.0;
        for (std::size_t i = s.size(); i-- > k;)
            sum += s[i] * s[i];
        return std::sqrt(sum);
    }
};

Known withSpectrum(Eigen::Index rows, Eigen::Index cols, const std::vector<double>& s, unsigned seed)
{
    const Eigen::Index r = static_cast<Eigen::Index>(s.size());
    Known k;
    const Eigen::MatrixXd u = orthonormalColumns(rows, r, seed);
    k.v = orthonormalColumns(cols, r, seed + 1);
    const Eigen::VectorXd sv = Eigen::Map<const Eigen::VectorXd>(s.data(), r);
    k.m = (u * sv.asDiagonal() * k.v.transpose()).cast<float>();
    k.s = s;
    return k;
}

std::vector<double> geometric(std::size_t n, double ratio)
{
    std::vector<double> s(n);
    for (std::size_t i = 0; i < n; ++i)
        s[i] = std::pow(ratio, static_cast<double>(i));
    return s;
}

double relativeReconstructionError(const MatrixRM& m, const LowRankFactors& f)
{
    const Eigen::MatrixXd md = m.cast<double>();
    const double norm = md.norm();
    const Eigen::MatrixXd product = f.up.cast<double>() * f.down.cast<double>();
    return norm > 0.0 ? (md - product).norm() / norm : product.norm();
}

// Rows of down are orthonormal, or zero.
double downOrthonormality(const LowRankFactors& f)
{
    const Eigen::MatrixXd d = f.down.cast<double>();
    Eigen::MatrixXd g = d * d.transpose();
    for (Eigen::Index i = 0; i < g.rows(); ++i)
        if (d.row(i).squaredNorm() > 0.0)
            g(i, i) -= 1.0;
    return g.cwiseAbs().maxCoeff();
}

// Smallest cosine of the principal angles between the row spaces of down and V_k^T.
double smallestCosine(const LowRankFactors& f, const Eigen::MatrixXd& v, Eigen::Index k)
{
    const Eigen::MatrixXd c = f.down.topRows(k).cast<double>() * v.leftCols(k);
    const std::vector<double> cosines = singularValues(MatrixXdRM(c));
    return cosines.back();
}

LowRankOptions randomizedOptions()
{
    LowRankOptions o;
    o.exactLimit = 50; // forces the randomized path on the test sizes
    return o;
}

} // namespace

class TestLowRankFactors : public QObject {
    Q_OBJECT

private slots:
    void fullRankReproducesTheMatrix_data()
    {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("rank"); // 0: full
        QTest::addColumn<int>("k");
        QTest::newRow("tall") << 90 << 50 << 0 << 50;
        QTest::newRow("wide") << 50 << 90 << 0 << 50;
        QTest::newRow("square") << 64 << 64 << 0 << 64;
        QTest::newRow("tall rank 13, k = rank") << 120 << 60 << 13 << 13;
        QTest::newRow("tall rank 13, k = min dim") << 120 << 60 << 13 << 60;
        QTest::newRow("wide rank 7, k = rank") << 30 << 140 << 7 << 7;
        QTest::newRow("wide rank 7, k = min dim") << 30 << 140 << 7 << 30;
        QTest::newRow("tall, k > min dim (padding)") << 40 << 25 << 0 << 31;
        QTest::newRow("wide rank 3, k > min dim (padding)") << 12 << 40 << 3 << 20;
        QTest::newRow("single row") << 1 << 17 << 0 << 1;
        QTest::newRow("single column, k = 3") << 17 << 1 << 0 << 3;
    }
    void fullRankReproducesTheMatrix()
    {
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, rank);
        QFETCH(int, k);
        const unsigned seed = static_cast<unsigned>(7 * rows + cols + rank);
        const MatrixRM m = rank > 0 ? MatrixRM((gaussian(rows, rank, seed) * gaussian(rank, cols, seed + 1)).cast<float>())
                                    : MatrixRM(gaussian(rows, cols, seed).cast<float>());
        const LowRankFactors f = lowRankFactors(m, k);
        QCOMPARE(f.up.rows(), Eigen::Index(rows));
        QCOMPARE(f.up.cols(), Eigen::Index(k));
        QCOMPARE(f.down.rows(), Eigen::Index(k));
        QCOMPARE(f.down.cols(), Eigen::Index(cols));
        QCOMPARE(f.singular.size(), std::size_t(k));
        const double error = relativeReconstructionError(m, f);
        QVERIFY2(error < 1e-5, qPrintable(QString("relative error %1").arg(error)));
        QVERIFY2(downOrthonormality(f) < 1e-5, qPrintable(QString("down orthonormality %1").arg(downOrthonormality(f))));
        const Eigen::Index minDim = std::min(rows, cols);
        if (k > minDim) {
            QVERIFY(f.up.rightCols(k - minDim).isZero(0.0f));
            QVERIFY(f.down.bottomRows(k - minDim).isZero(0.0f));
            for (int i = static_cast<int>(minDim); i < k; ++i)
                QCOMPARE(f.singular[static_cast<std::size_t>(i)], 0.0);
        }
        QVERIFY(f.residual <= 1e-5 * m.cast<double>().norm());
        QVERIFY(f.optimalResidual >= 0.0 && f.optimalResidual <= 1e-5 * m.cast<double>().norm());
    }

    void badlyScaledFullRank()
    {
        // Singular values from 1 down to 1e-6: the product still reproduces M (the weak directions are cheap to
        // get wrong in direction but they are rebuilt from M itself).
        std::vector<double> s(60);
        for (std::size_t i = 0; i < s.size(); ++i)
            s[i] = std::pow(10.0, -6.0 * static_cast<double>(i) / 59.0);
        for (auto [rows, cols] : {std::pair{150, 60}, std::pair{60, 150}}) {
            const Known known = withSpectrum(rows, cols, s, 31);
            const LowRankFactors f = lowRankFactors(known.m, 60);
            QVERIFY2(relativeReconstructionError(known.m, f) < 1e-5, qPrintable(QString::number(relativeReconstructionError(known.m, f))));
            QVERIFY2(downOrthonormality(f) < 1e-5, qPrintable(QString::number(downOrthonormality(f))));
        }
    }

    void residualIsOptimal_data()
    {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("k");
        QTest::addColumn<bool>("randomized");
        for (int k : {6, 30}) {
            QTest::newRow(qPrintable(QString("exact tall k=%1").arg(k))) << 200 << 120 << k << false;
            QTest::newRow(qPrintable(QString("exact wide k=%1").arg(k))) << 120 << 200 << k << false;
            QTest::newRow(qPrintable(QString("randomized tall k=%1").arg(k))) << 600 << 300 << k << true;
            QTest::newRow(qPrintable(QString("randomized wide k=%1").arg(k))) << 300 << 600 << k << true;
        }
    }
    void residualIsOptimal()
    {
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, k);
        QFETCH(bool, randomized);
        const Known known = withSpectrum(rows, cols, geometric(static_cast<std::size_t>(std::min(rows, cols)), 0.9), 77);
        const LowRankFactors f = lowRankFactors(known.m, k, randomized ? randomizedOptions() : LowRankOptions{});
        const double optimal = known.tail(static_cast<std::size_t>(k));
        QVERIFY2(std::abs(f.residual / optimal - 1.0) < 1e-4,
                 qPrintable(QString("residual %1, optimal %2").arg(f.residual, 0, 'g', 10).arg(optimal, 0, 'g', 10)));
        // The reported residual is the measured one.
        const double measured = relativeReconstructionError(known.m, f) * known.m.cast<double>().norm();
        QVERIFY2(std::abs(measured / f.residual - 1.0) < 1e-4,
                 qPrintable(QString("measured %1, reported %2").arg(measured, 0, 'g', 10).arg(f.residual, 0, 'g', 10)));
        if (randomized) {
            QCOMPARE(f.optimalResidual, -1.0);
        } else {
            QVERIFY(std::abs(f.optimalResidual / optimal - 1.0) < 1e-6);
        }
        for (int i = 0; i < k; ++i)
            QVERIFY(std::abs(f.singular[static_cast<std::size_t>(i)] / known.s[static_cast<std::size_t>(i)] - 1.0) < 1e-5);
        QVERIFY(downOrthonormality(f) < 1e-5);
    }

    void subspaceWithSpectralGap_data()
    {
        QTest::addColumn<bool>("randomized");
        QTest::addColumn<bool>("wide");
        QTest::newRow("exact tall") << false << false;
        QTest::newRow("exact wide") << false << true;
        QTest::newRow("randomized tall") << true << false;
        QTest::newRow("randomized wide") << true << true;
    }
    void subspaceWithSpectralGap()
    {
        QFETCH(bool, randomized);
        QFETCH(bool, wide);
        const int k = 20;
        std::vector<double> s(200);
        for (std::size_t i = 0; i < s.size(); ++i)
            s[i] = i < std::size_t(k) ? 1.0 - 0.01 * static_cast<double>(i) : 0.05 * std::pow(0.97, static_cast<double>(i - k));
        const Known known = wide ? withSpectrum(200, 400, s, 5) : withSpectrum(400, 200, s, 5);
        const LowRankFactors f = lowRankFactors(known.m, k, randomized ? randomizedOptions() : LowRankOptions{});
        const double cosine = smallestCosine(f, known.v, k);
        QVERIFY2(cosine > 1.0 - 1e-6, qPrintable(QString("smallest cosine %1").arg(cosine, 0, 'g', 12)));
    }

    void zeroMatrix()
    {
        const MatrixRM zero = MatrixRM::Zero(120, 80);
        for (bool randomized : {false, true}) {
            const LowRankFactors f = lowRankFactors(zero, 10, randomized ? randomizedOptions() : LowRankOptions{});
            QCOMPARE(f.up.rows(), Eigen::Index(120));
            QCOMPARE(f.down.cols(), Eigen::Index(80));
            QVERIFY(f.up.isZero(0.0f));
            QCOMPARE(f.residual, 0.0);
            QCOMPARE(f.singular, std::vector<double>(10, 0.0));
            QVERIFY(downOrthonormality(f) < 1e-6);
        }
    }

    void rankZeroAndInvalidRank()
    {
        const MatrixRM m = gaussian(9, 6, 1).cast<float>();
        const LowRankFactors f = lowRankFactors(m, 0);
        QCOMPARE(f.up.rows(), Eigen::Index(9));
        QCOMPARE(f.up.cols(), Eigen::Index(0));
        QCOMPARE(f.down.rows(), Eigen::Index(0));
        QCOMPARE(f.down.cols(), Eigen::Index(6));
        QVERIFY(std::abs(f.residual / m.cast<double>().norm() - 1.0) < 1e-12);
        QVERIFY_THROWS_EXCEPTION(Error, lowRankFactors(m, -1));
    }

    void randomizedIsDeterministic()
    {
        const Known known = withSpectrum(300, 200, geometric(200, 0.95), 3);
        const LowRankFactors a = lowRankFactors(known.m, 30, randomizedOptions());
        const LowRankFactors b = lowRankFactors(known.m, 30, randomizedOptions());
        QVERIFY(a.up == b.up);
        QVERIFY(a.down == b.down);
        LowRankOptions other = randomizedOptions();
        other.seed = 99;
        const LowRankFactors c = lowRankFactors(known.m, 30, other);
        QVERIFY(!(a.down == c.down));
        QVERIFY(std::abs(c.residual / a.residual - 1.0) < 1e-3);
    }

    void spectralDecompositionReuse()
    {
        const Known known = withSpectrum(150, 90, geometric(90, 0.93), 8);
        const SpectralDecomposition spectral(known.m);
        QCOMPARE(spectral.singularValues(), singularValues(known.m));
        for (int k : {4, 40}) {
            const LowRankFactors fromSpectral = spectral.factors(known.m, k);
            const LowRankFactors direct = lowRankFactors(known.m, k);
            QVERIFY(fromSpectral.up == direct.up);
            QVERIFY(fromSpectral.down == direct.down);
            QCOMPARE(fromSpectral.residual, direct.residual);
        }
        QVERIFY(std::abs(spectral.squaredNorm() / known.m.cast<double>().squaredNorm() - 1.0) < 1e-12);
        const MatrixRM otherShape = known.m.topRows(100);
        QVERIFY_THROWS_EXCEPTION(Error, spectral.factors(otherShape, 4));
    }

    void cancellation()
    {
        std::atomic<bool> cancel{true};
        const JobControl job(&cancel, nullptr);
        const MatrixRM m = gaussian(200, 150, 4).cast<float>();
        QVERIFY_THROWS_EXCEPTION(Cancelled, lowRankFactors(m, 10, {}, job));
        QVERIFY_THROWS_EXCEPTION(Cancelled, lowRankFactors(m, 10, randomizedOptions(), job));
    }
};

QTEST_GUILESS_MAIN(TestLowRankFactors)
#include "tst_low_rank_factors.moc"
