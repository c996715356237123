// The dense kernels against plain double loops written here: the float GEMM (the allocation's candidate errors) and
// the double one through both builds (AVX2 + FMA where the CPU has it, and the generic one), on strided blocks and
// every transpose combination; the row-major wrapper; the Gram and cross-product accumulators of calibration and
// least-squares fits.
#include "common/test_support.h"

#include "numerics/dense_kernels.h"
#include "numerics/gram.h"

#include <random>

#include <omp.h>

using namespace mla;

namespace {

template <typename M>
M randomDenseMatrix(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    M m(rows, cols);
    for (Eigen::Index r = 0; r < rows; ++r)
        for (Eigen::Index c = 0; c < cols; ++c)
            m(r, c) = static_cast<typename M::Scalar>(normal(rng));
    return m;
}

// op(a) op(b) in double by loops.
Eigen::MatrixXd naiveProduct(const Eigen::MatrixXd& a, bool ta, const Eigen::MatrixXd& b, bool tb)
{
    const Eigen::Index m = ta ? a.cols() : a.rows(), k = ta ? a.rows() : a.cols(), n = tb ? b.rows() : b.cols();
    Eigen::MatrixXd c = Eigen::MatrixXd::Zero(m, n);
    for (Eigen::Index i = 0; i < m; ++i)
        for (Eigen::Index j = 0; j < n; ++j) {
            double sum = 0.0;
            for (Eigen::Index p = 0; p < k; ++p)
                sum += (ta ? a(p, i) : a(i, p)) * (tb ? b(j, p) : b(p, j));
            c(i, j) = sum;
        }
    return c;
}

class TestDenseKernels : public QObject {
    Q_OBJECT
private slots:
    void floatGemmOnStridedBlocks_data();
    void floatGemmOnStridedBlocks();
    void doubleGemmRowMajor();
    void gramAndCrossProductAccumulate();
    void cleanup() { allowAvx2DenseKernels(true); }
};

void TestDenseKernels::floatGemmOnStridedBlocks_data()
{
    QTest::addColumn<bool>("avx2");
    QTest::addColumn<bool>("transA");
    QTest::addColumn<bool>("transB");
    for (bool avx2 : {true, false})
        for (bool ta : {false, true})
            for (bool tb : {false, true})
                QTest::addRow("%s a%s b%s", avx2 ? "avx2" : "generic", ta ? "T" : "", tb ? "T" : "") << avx2 << ta << tb;
}

void TestDenseKernels::floatGemmOnStridedBlocks()
{
    QFETCH(bool, avx2);
    QFETCH(bool, transA);
    QFETCH(bool, transB);
    allowAvx2DenseKernels(avx2);
    const Eigen::Index m = 37, k = 70, n = 29; // odd sizes: every kernel's edge cases
    // Blocks inside larger matrices, so the outer strides are not the block sizes.
    const Eigen::MatrixXf bigA = randomDenseMatrix<Eigen::MatrixXf>(transA ? k + 5 : m + 5, transA ? m + 3 : k + 3, 1);
    const Eigen::MatrixXf bigB = randomDenseMatrix<Eigen::MatrixXf>(transB ? n + 4 : k + 4, transB ? k + 2 : n + 2, 2);
    Eigen::MatrixXf bigC = randomDenseMatrix<Eigen::MatrixXf>(m + 6, n + 1, 3);
    const auto a = bigA.block(2, 1, transA ? k : m, transA ? m : k);
    const auto b = bigB.block(1, 2, transB ? n : k, transB ? k : n);
    const Eigen::MatrixXd c0 = bigC.block(3, 0, m, n).cast<double>();
    const Eigen::MatrixXd expected = 0.5 * c0 + 2.0 * naiveProduct(a.cast<double>(), transA, b.cast<double>(), transB);
    auto c = bigC.block(3, 0, m, n);
    const int threads = omp_get_max_threads();
    gemm(c, 2.0f, a, transA ? Op::Transpose : Op::None, b, transB ? Op::Transpose : Op::None, 0.5f);
    QCOMPARE(omp_get_max_threads(), threads); // the float GEMM runs serially but leaves the thread count as it was
    const double error = (c.cast<double>() - expected).cwiseAbs().maxCoeff();
    QVERIFY2(error < 1e-4 * std::sqrt(static_cast<double>(k)), qPrintable(QString::number(error)));
    // Outside the block nothing was written.
    QCOMPARE(bigC(0, 0), randomDenseMatrix<Eigen::MatrixXf>(m + 6, n + 1, 3)(0, 0));
    QCOMPARE(bigC(m + 5, n), randomDenseMatrix<Eigen::MatrixXf>(m + 6, n + 1, 3)(m + 5, n));
    // The wrong shapes are refused.
    Eigen::MatrixXf wrong(m + 1, n);
    QVERIFY_THROWS_EXCEPTION(std::exception, gemm(wrong, 1.0f, a, transA ? Op::Transpose : Op::None, b, transB ? Op::Transpose : Op::None, 0.0f));
}

void TestDenseKernels::doubleGemmRowMajor()
{
    for (bool avx2 : {true, false}) {
        allowAvx2DenseKernels(avx2);
        const RowMajorMatrixXd a = randomDenseMatrix<RowMajorMatrixXd>(23, 41, 4);
        const RowMajorMatrixXd b = randomDenseMatrix<RowMajorMatrixXd>(41, 17, 5);
        RowMajorMatrixXd c = randomDenseMatrix<RowMajorMatrixXd>(23, 17, 6);
        const Eigen::MatrixXd expected = -1.0 * naiveProduct(a, false, b, false) + 3.0 * Eigen::MatrixXd(c);
        gemmRowMajor(c, -1.0, a, b, 3.0);
        QVERIFY((Eigen::MatrixXd(c) - expected).cwiseAbs().maxCoeff() < 1e-12);
        RowMajorMatrixXd wrong(22, 17);
        QVERIFY_THROWS_EXCEPTION(std::exception, gemmRowMajor(wrong, 1.0, a, b, 0.0));
    }
}

void TestDenseKernels::gramAndCrossProductAccumulate()
{
    for (bool avx2 : {true, false}) {
        allowAvx2DenseKernels(avx2);
        // More rows than one chunk of the accumulators (512), and not a multiple of it.
        const MatrixRM x = randomDenseMatrix<MatrixRM>(1100, 19, 7);
        const MatrixRM y = randomDenseMatrix<MatrixRM>(1100, 7, 8);
        const Eigen::MatrixXd xd = x.cast<double>(), yd = y.cast<double>();
        MatrixRMd gram = randomDenseMatrix<MatrixRMd>(19, 19, 9);
        gram = (gram + gram.transpose()).eval(); // accumulating into a symmetric start
        const Eigen::MatrixXd gramStart = gram;
        MatrixRMd cross = randomDenseMatrix<MatrixRMd>(19, 7, 10);
        const Eigen::MatrixXd crossStart = cross;
        addGram(gram, x);
        addCrossProduct(cross, x, y);
        const Eigen::MatrixXd gramExpected = gramStart + naiveProduct(xd, true, xd, false);
        const Eigen::MatrixXd crossExpected = crossStart + naiveProduct(xd, true, yd, false);
        QVERIFY((Eigen::MatrixXd(gram) - gramExpected).cwiseAbs().maxCoeff() < 1e-9 * gramExpected.cwiseAbs().maxCoeff());
        QVERIFY((Eigen::MatrixXd(cross) - crossExpected).cwiseAbs().maxCoeff() < 1e-9 * crossExpected.cwiseAbs().maxCoeff());
        QVERIFY(Eigen::MatrixXd(gram) == Eigen::MatrixXd(gram.transpose())); // exactly symmetric
        MatrixRMd wrong(18, 19);
        QVERIFY_THROWS_EXCEPTION(std::exception, addGram(wrong, x));
        QVERIFY_THROWS_EXCEPTION(std::exception, addCrossProduct(cross, x, MatrixRM(1099, 7)));
    }
}

} // namespace

QTEST_GUILESS_MAIN(TestDenseKernels)
#include "tst_dense_kernels.moc"
