#include "common/test_support.h"

#include "numerics/decompositions.h"
#include "util/error.h"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>

using namespace mla;

namespace {

Eigen::MatrixXd gaussianMatrix(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    Eigen::MatrixXd m(rows, cols);
    for (Eigen::Index c = 0; c < cols; ++c)
        for (Eigen::Index r = 0; r < rows; ++r)
            m(r, c) = normal(rng);
    return m;
}

// Reference singular values of exactly the matrix we pass (the float matrix widened to double), descending.
Eigen::VectorXd referenceSingularValues(const Eigen::MatrixXd& m)
{
    if (std::min(m.rows(), m.cols()) > 200)
        return Eigen::BDCSVD<Eigen::MatrixXd>(m).singularValues();
    return Eigen::JacobiSVD<Eigen::MatrixXd>(m).singularValues();
}

// Through the Gram matrix, an eigenvalue s_i^2 carries an absolute error of about c eps s_1^2, so s_i is off by at most
// min(sqrt(c eps) s_1, c eps s_1^2 / (2 s_i)): relative accuracy for the large values, ~1e-7 s_1 absolute for the
// (near-)zero ones. c = 100 leaves room for the reduction's and the reference's rounding.
void checkAgainstReference(const std::vector<double>& ours, const Eigen::VectorXd& reference)
{
    QCOMPARE(static_cast<Eigen::Index>(ours.size()), reference.size());
    const double s1 = reference.size() > 0 ? reference(0) : 0.0;
    const double ceps = 100.0 * std::numeric_limits<double>::epsilon();
    for (Eigen::Index i = 0; i < reference.size(); ++i) {
        const double s = ours[static_cast<std::size_t>(i)];
        if (i > 0)
            QVERIFY(ours[static_cast<std::size_t>(i) - 1] >= s);
        const double r = reference(i);
        const double tol = std::min(std::sqrt(ceps) * s1, r > 0.0 ? ceps * s1 * s1 / (2.0 * r) : 1e300) + 1e-13 * r;
        QVERIFY2(std::abs(s - r) <= tol, qPrintable(QString("s[%1] = %2, reference %3, tolerance %4")
                                                        .arg(i).arg(s, 0, 'g', 17).arg(r, 0, 'g', 17).arg(tol, 0, 'g', 3)));
    }
}

} // namespace

class TestSingularValues : public QObject {
    Q_OBJECT

private slots:
    void matchesEigenSvd_data()
    {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("rank"); // 0: full
        QTest::addColumn<double>("spread"); // singular values span 10^-spread .. 1 (0: plain Gaussian)
        QTest::newRow("tall random") << 300 << 120 << 0 << 0.0;
        QTest::newRow("wide random") << 90 << 250 << 0 << 0.0;
        QTest::newRow("square random") << 180 << 180 << 0 << 0.0;
        QTest::newRow("tall rank 17") << 260 << 100 << 17 << 0.0;
        QTest::newRow("wide rank 9") << 40 << 350 << 9 << 0.0;
        QTest::newRow("square rank 1") << 64 << 64 << 1 << 0.0;
        QTest::newRow("tall badly scaled") << 240 << 80 << 0 << 6.0;
        QTest::newRow("wide badly scaled") << 70 << 210 << 0 << 9.0;
        QTest::newRow("square badly scaled") << 150 << 150 << 0 << 12.0;
        QTest::newRow("one row") << 1 << 50 << 0 << 0.0;
        QTest::newRow("one column") << 50 << 1 << 0 << 0.0;
    }
    void matchesEigenSvd()
    {
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, rank);
        QFETCH(double, spread);
        const unsigned seed = static_cast<unsigned>(rows * 1000 + cols);
        Eigen::MatrixXd m;
        if (rank > 0) {
            m = gaussianMatrix(rows, rank, seed) * gaussianMatrix(rank, cols, seed + 1);
        } else if (spread > 0.0) {
            // Rows and columns scaled over many orders of magnitude, as badly normalised weights would be.
            m = gaussianMatrix(rows, cols, seed);
            for (Eigen::Index r = 0; r < rows; ++r)
                m.row(r) *= std::pow(10.0, -spread * static_cast<double>(r) / rows);
            for (Eigen::Index c = 0; c < cols; ++c)
                m.col(c) *= std::pow(10.0, 2.0 * std::sin(static_cast<double>(c)));
        } else {
            m = gaussianMatrix(rows, cols, seed);
        }
        const MatrixRM f = m.cast<float>();
        const Eigen::MatrixXd widened = f.cast<double>();
        checkAgainstReference(singularValues(f), referenceSingularValues(widened));
        // The double overload, on the double matrix itself.
        checkAgainstReference(singularValues(MatrixXdRM(m)), referenceSingularValues(m));
    }

    void diagonalIsExact()
    {
        MatrixRM m = MatrixRM::Zero(6, 4);
        m(0, 0) = 3.0f;
        m(1, 1) = -5.0f;
        m(2, 2) = 0.5f;
        m(4, 3) = 2.0f; // a permuted diagonal
        const std::vector<double> s = singularValues(m);
        const std::vector<double> expected{5.0, 3.0, 2.0, 0.5};
        QCOMPARE(s.size(), expected.size());
        for (std::size_t i = 0; i < s.size(); ++i)
            QVERIFY(std::abs(s[i] - expected[i]) <= 1e-14 * 5.0);
    }

    void emptyAndZero()
    {
        QVERIFY(singularValues(MatrixRM(0, 5)).empty());
        QVERIFY(singularValues(MatrixRM(7, 0)).empty());
        const std::vector<double> zero = singularValues(MatrixRM::Zero(8, 3).eval());
        QCOMPARE(zero, std::vector<double>(3, 0.0));
    }

    void rejectsNonFinite()
    {
        MatrixRM m = MatrixRM::Ones(4, 4);
        m(2, 1) = std::numeric_limits<float>::quiet_NaN();
        QVERIFY_THROWS_EXCEPTION(Error, singularValues(m));
    }

    void cancellation()
    {
        std::atomic<bool> cancel{true};
        const JobControl job(&cancel, nullptr);
        QVERIFY_THROWS_EXCEPTION(Cancelled, singularValues(MatrixRM::Ones(50, 40).eval(), job));
    }

    void errorCurveClosedForm()
    {
        // diag(3, 2, 1): sum of squares 14, err[k] = sqrt(tail / 14).
        MatrixRM m = MatrixRM::Zero(3, 3);
        m(0, 0) = 3.0f;
        m(1, 1) = 2.0f;
        m(2, 2) = 1.0f;
        const std::vector<double> err = relativeErrorCurve(singularValues(m));
        const std::vector<double> expected{1.0, std::sqrt(5.0 / 14.0), std::sqrt(1.0 / 14.0), 0.0};
        QCOMPARE(err.size(), expected.size());
        for (std::size_t k = 0; k < err.size(); ++k)
            QVERIFY2(std::abs(err[k] - expected[k]) <= 1e-14, qPrintable(QString("err[%1] = %2").arg(k).arg(err[k], 0, 'g', 17)));
    }

    void errorCurveEdgeCases()
    {
        QCOMPARE(relativeErrorCurve({}), std::vector<double>{0.0});
        QCOMPARE(relativeErrorCurve({0.0, 0.0}), (std::vector<double>{0.0, 0.0, 0.0}));
        QCOMPARE(relativeErrorCurve({2.0}), (std::vector<double>{1.0, 0.0}));
        // A tail far below the head keeps its relative accuracy (total - head would give 0 here).
        const std::vector<double> err = relativeErrorCurve({1.0, 1e-10, 1e-12});
        QVERIFY(std::abs(err[1] / (std::sqrt(1e-20 + 1e-24) / std::sqrt(1.0 + 1e-20 + 1e-24)) - 1.0) < 1e-14);
        QVERIFY(std::abs(err[2] / 1e-12 - 1.0) < 1e-14);
        // Geometric spectrum: monotone, and matching the closed form of a geometric series.
        std::vector<double> s;
        for (int i = 0; i < 200; ++i)
            s.push_back(std::pow(0.9, i));
        const std::vector<double> curve = relativeErrorCurve(s);
        for (std::size_t k = 1; k < curve.size(); ++k)
            QVERIFY(curve[k] <= curve[k - 1]);
        const double q = 0.81;
        for (int k : {1, 10, 100, 199}) {
            const double expected = std::sqrt((std::pow(q, k) - std::pow(q, 200)) / (1.0 - std::pow(q, 200)));
            QVERIFY(std::abs(curve[static_cast<std::size_t>(k)] / expected - 1.0) < 1e-12);
        }
        QCOMPARE(curve.back(), 0.0);
    }
};

QTEST_GUILESS_MAIN(TestSingularValues)
#include "tst_singular_values.moc"
