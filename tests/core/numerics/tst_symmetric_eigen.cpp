#include "common/test_support.h"

#include "numerics/symmetric_eigen.h"
#include "numerics/symmetric_kernels.h"
#include "util/error.h"

#include <Eigen/Eigenvalues>
#include <Eigen/QR>

#include <omp.h>

#include <atomic>
#include <random>

using namespace mla;

namespace {

Eigen::MatrixXd gaussianSamples(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    Eigen::MatrixXd m(rows, cols);
    for (Eigen::Index c = 0; c < cols; ++c)
        for (Eigen::Index r = 0; r < rows; ++r)
            m(r, c) = normal(rng);
    return m;
}

Eigen::MatrixXd randomOrthogonal(Eigen::Index n, unsigned seed)
{
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(gaussianSamples(n, n, seed));
    return qr.householderQ() * Eigen::MatrixXd::Identity(n, n);
}

// Q diag(values) Q^T for a random orthogonal Q.
Eigen::MatrixXd withEigenvalues(const Eigen::VectorXd& values, unsigned seed)
{
    const Eigen::MatrixXd q = randomOrthogonal(values.size(), seed);
    return q * values.asDiagonal() * q.transpose();
}

Eigen::MatrixXd randomSymmetric(Eigen::Index n, unsigned seed)
{
    const Eigen::MatrixXd g = gaussianSamples(n, n, seed);
    return (g + g.transpose()) / 2.0;
}

Eigen::VectorXd referenceEigenvalues(const Eigen::MatrixXd& a)
{
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(a, Eigen::EigenvaluesOnly);
    return solver.eigenvalues().reverse();
}

// Checks A z_i = lambda_i z_i and Z^T Z = I for the computed top-k eigenpairs.
void checkEigenpairs(const Eigen::MatrixXd& a, const SymmetricEigen& eig, Eigen::Index k, double orthogonalityTol = 1e-8)
{
    const double norm = std::max(a.cwiseAbs().maxCoeff(), 1e-300) * static_cast<double>(a.rows());
    QCOMPARE(eig.vectors.rows(), a.rows());
    QCOMPARE(eig.vectors.cols(), k);
    const Eigen::MatrixXd residual = a * eig.vectors - eig.vectors * eig.values.head(k).asDiagonal();
    const double worst = residual.cwiseAbs().maxCoeff() * std::sqrt(static_cast<double>(a.rows())); // no overflow at 1e280
    QVERIFY2(worst <= 1e-12 * norm, qPrintable(QString("eigen residual %1").arg(worst / norm)));
    const double orthogonality = (eig.vectors.transpose() * eig.vectors - Eigen::MatrixXd::Identity(k, k)).cwiseAbs().maxCoeff();
    QVERIFY2(orthogonality <= orthogonalityTol, qPrintable(QString("orthogonality %1").arg(orthogonality)));
}

} // namespace

class TestSymmetricEigen : public QObject {
    Q_OBJECT

private slots:
    void eigenvaluesMatchEigen_data()
    {
        QTest::addColumn<int>("n");
        // 47..49: panel boundaries; 800: large enough for the two-thread matrix-vector product to be tried.
        for (int n : {1, 2, 3, 47, 48, 49, 97, 200, 341, 800})
            QTest::newRow(qPrintable(QString("n=%1").arg(n))) << n;
    }
    void eigenvaluesMatchEigen()
    {
        QFETCH(int, n);
        const Eigen::MatrixXd a = randomSymmetric(n, 11u + static_cast<unsigned>(n));
        const Eigen::VectorXd ours = symmetricEigenvalues(a);
        const Eigen::VectorXd reference = referenceEigenvalues(a);
        QCOMPARE(ours.size(), reference.size());
        const double scale = reference.cwiseAbs().maxCoeff();
        QVERIFY((ours - reference).cwiseAbs().maxCoeff() <= 1e-12 * scale * std::max(1.0, std::sqrt(double(n))));
        for (Eigen::Index i = 1; i < ours.size(); ++i)
            QVERIFY(ours(i - 1) >= ours(i));
    }

    void reductionIsSimilarityToTridiagonal()
    {
        const Eigen::Index n = 150; // several panels and back-transformation blocks
        const Eigen::MatrixXd a = randomSymmetric(n, 5);
        const TridiagonalReduction reduction(a);
        Eigen::MatrixXd q = Eigen::MatrixXd::Identity(n, n);
        reduction.applyQ(q);
        QVERIFY((q.transpose() * q - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() < 1e-13);
        Eigen::MatrixXd t = Eigen::MatrixXd::Zero(n, n);
        t.diagonal() = reduction.diagonal();
        t.diagonal(-1) = reduction.subdiagonal();
        t.diagonal(1) = reduction.subdiagonal();
        QVERIFY((q.transpose() * a * q - t).cwiseAbs().maxCoeff() < 1e-12 * a.cwiseAbs().maxCoeff() * n);
    }

    void eigenvectorsOfRandomMatrices_data()
    {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("k");
        QTest::newRow("n=1 k=1") << 1 << 1;
        QTest::newRow("n=2 k=2") << 2 << 2;
        QTest::newRow("n=60 k=10") << 60 << 10;
        QTest::newRow("n=200 k=200") << 200 << 200;
        QTest::newRow("n=400 k=150") << 400 << 150;
    }
    void eigenvectorsOfRandomMatrices()
    {
        QFETCH(int, n);
        QFETCH(int, k);
        const Eigen::MatrixXd a = randomSymmetric(n, 100u + static_cast<unsigned>(n));
        const SymmetricEigen eig = symmetricEigen(a, k);
        checkEigenpairs(a, eig, k);
        // Against Eigen's vectors (the eigenvalues of a random matrix are well separated): |<z, z_ref>| = 1.
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> reference(a);
        for (Eigen::Index i = 0; i < k; ++i) {
            const double cosine = std::abs(eig.vectors.col(i).dot(reference.eigenvectors().col(n - 1 - i)));
            QVERIFY2(cosine > 1.0 - 1e-9, qPrintable(QString("vector %1: |cos| = %2").arg(i).arg(cosine, 0, 'g', 17)));
        }
    }

    void repeatedEigenvalues()
    {
        // Multiplicities 1, 5, 20, 3 and a tight cluster below 1e-8: the clustered vectors must still be orthonormal.
        Eigen::VectorXd values(60);
        values.setLinSpaced(60, -1.0, 1.0);
        values.segment(0, 5).setConstant(2.0);
        values.segment(5, 20).setConstant(1.5);
        values.segment(25, 3).setConstant(-3.0);
        for (int i = 0; i < 4; ++i)
            values(30 + i) = 0.25 + 1e-12 * i;
        const Eigen::MatrixXd a = withEigenvalues(values, 9);
        const SymmetricEigen eig = symmetricEigen(a, 60);
        checkEigenpairs(a, eig, 60);
    }

    void rankDeficientGramAndIdentity()
    {
        // A Gram matrix of rank 12 (88 zero eigenvalues): all of its vectors, as the full-rank factors need them.
        const Eigen::MatrixXd x = gaussianSamples(12, 100, 3);
        const Eigen::MatrixXd g = x.transpose() * x;
        const SymmetricEigen eig = symmetricEigen(g, 100);
        checkEigenpairs(g, eig, 100);
        QVERIFY(eig.values.tail(88).cwiseAbs().maxCoeff() < 1e-12 * eig.values(0));

        const Eigen::MatrixXd identity = Eigen::MatrixXd::Identity(40, 40) * 7.0;
        const SymmetricEigen same = symmetricEigen(identity, 40);
        checkEigenpairs(identity, same, 40);
        QVERIFY((same.values.array() - 7.0).abs().maxCoeff() < 1e-14);
    }

    void zeroMatrix()
    {
        const SymmetricEigen eig = symmetricEigen(Eigen::MatrixXd::Zero(10, 10), 4);
        QCOMPARE(eig.values, Eigen::VectorXd::Zero(10).eval());
        QVERIFY((eig.vectors.transpose() * eig.vectors - Eigen::MatrixXd::Identity(4, 4)).norm() == 0.0);
    }

    void badlyScaled()
    {
        // Eigenvalues spanning 1e-300 .. 1e300 overall scale: the solver scales to unit max-norm first.
        for (double scale : {1e-280, 1e-20, 1e20, 1e280}) {
            Eigen::VectorXd values = Eigen::VectorXd::LinSpaced(30, 1.0, 30.0) * scale;
            const Eigen::MatrixXd a = withEigenvalues(values, 21);
            const SymmetricEigen eig = symmetricEigen(a, 30);
            QVERIFY(((eig.values.reverse() - values).array() / values.array()).abs().maxCoeff() < 1e-12);
            checkEigenpairs(a, eig, 30);
        }
    }

    void deterministic_data()
    {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("k");
        QTest::addColumn<unsigned>("seed");
        QTest::newRow("n=120 k=30") << 120 << 30 << 17u;
        // Above the size where the reduction's matrix-vector product may use threads, chosen by timing.
        QTest::newRow("n=800 k=20") << 800 << 20 << 29u;
    }

    void deterministic()
    {
        QFETCH(int, n);
        QFETCH(int, k);
        QFETCH(unsigned, seed);
        const Eigen::MatrixXd a = randomSymmetric(n, seed);
        const SymmetricEigen first = symmetricEigen(a, k);
        const SymmetricEigen second = symmetricEigen(a, k);
        QVERIFY(first.vectors == second.vectors);
        QVERIFY(first.values == second.values);
    }

    // The matrix-vector product of the tridiagonal reduction picks one or all threads by timing; the reduction (and so
    // every exact decomposition) must not depend on that choice, nor on the number of threads.
    void symmetricProductIsTheSameWhateverThreadsOrTiming()
    {
        const Eigen::Index n = 1000; // above the size where threads are considered
        const Eigen::MatrixXd a = randomSymmetric(n, 23);
        const Eigen::VectorXd x = gaussianSamples(n, 1, 24).col(0);
        const Eigen::VectorXd reference = a * x;
        const int threads = omp_get_max_threads();
        std::vector<Eigen::VectorXd> results;
        for (const int t : {1, 2, 3}) {
            omp_set_num_threads(t);
            SymmetricMatVec symv; // a fresh object samples both modes first, then alternates every 16th call
            for (int call = 0; call < 40; ++call) {
                Eigen::VectorXd y(n);
                symv.apply(a.data(), n, n, x.data(), y.data());
                results.push_back(y);
            }
        }
        omp_set_num_threads(threads);
        QVERIFY2((results.front() - reference).norm() <= 1e-12 * reference.norm(),
                 qPrintable(QString("relative error %1").arg((results.front() - reference).norm() / reference.norm())));
        for (std::size_t i = 1; i < results.size(); ++i)
            QVERIFY2(results[i] == results.front(), qPrintable(QString("call %1 differs").arg(i)));
    }

    void cancellation()
    {
        std::atomic<bool> cancel{true};
        const JobControl job(&cancel, nullptr);
        QVERIFY_THROWS_EXCEPTION(Cancelled, symmetricEigen(randomSymmetric(100, 1), 10, job));
    }

    void reportsProgress()
    {
        double last = -1.0;
        bool monotone = true;
        const JobControl job(nullptr, [&](double f, const std::string&) {
            monotone = monotone && f >= last - 1e-12 && f <= 1.0 + 1e-12;
            last = f;
        });
        symmetricEigen(randomSymmetric(300, 2), 100, job);
        QVERIFY(monotone);
        QCOMPARE(last, 1.0);
    }
};

QTEST_GUILESS_MAIN(TestSymmetricEigen)
#include "tst_symmetric_eigen.moc"
