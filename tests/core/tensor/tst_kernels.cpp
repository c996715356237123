// The inference kernels (matvec and the prefill GEMM) against a double-precision product, for every weight dtype and
// shapes with ragged row panels, column tails and token counts that are not multiples of the kernels' blocks.
#include "common/test_support.h"

#include "tensor/kernels.h"
#include "tensor/tensor.h"

#include <cmath>
#include <random>

using namespace mla;

namespace {

MatrixRM uniform(Eigen::Index rows, Eigen::Index cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    MatrixRM m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i)
        m.data()[i] = dist(rng);
    return m;
}

} // namespace

class TestKernels : public QObject {
    Q_OBJECT
private slots:
    void matchesDoubleProduct_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<int>("tokens");
        const int dtypes[] = {static_cast<int>(DType::F32), static_cast<int>(DType::F16), static_cast<int>(DType::BF16)};
        const int shapes[][3] = {{1, 1, 1}, {5, 7, 1}, {37, 61, 1}, {64, 576, 1}, {300, 1000, 1}, {5, 7, 2},
                                 {37, 61, 7}, {16, 16, 6}, {17, 23, 13}, {100, 576, 31}, {300, 1000, 5}};
        for (const int d : dtypes)
            for (const auto& s : shapes)
                QTest::addRow("dtype %d, %dx%d, %d tokens", d, s[0], s[1], s[2]) << d << s[0] << s[1] << s[2];
    }

    void matchesDoubleProduct()
    {
        QFETCH(int, dtype);
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(int, tokens);
        const MatrixRM w = uniform(rows, cols, 1);
        const Tensor weight = Tensor::fromFloats(static_cast<DType>(dtype), {rows, cols}, w.data());
        const MatrixRM rounded = weight.toMatrix();
        const MatrixRM x = uniform(tokens, cols, 2);
        MatrixRM y;
        matmulTransposed(weight, x, y);
        QCOMPARE(y.rows(), static_cast<Eigen::Index>(tokens));
        QCOMPARE(y.cols(), static_cast<Eigen::Index>(rows));
        const MatrixRMd expected = x.cast<double>() * rounded.cast<double>().transpose();
        const double bound = 1e-6 * cols;
        for (Eigen::Index t = 0; t < y.rows(); ++t)
            for (Eigen::Index r = 0; r < y.cols(); ++r)
                QVERIFY2(std::abs(y(t, r) - expected(t, r)) <= bound,
                         qPrintable(QString("token %1, row %2: %3 vs %4").arg(t).arg(r).arg(y(t, r)).arg(expected(t, r))));
        if (tokens == 1) {
            std::vector<float> single(static_cast<std::size_t>(rows));
            matvec(weight, x.data(), single.data());
            for (int r = 0; r < rows; ++r)
                QCOMPARE(single[static_cast<std::size_t>(r)], y(0, r));
        }
    }
};

QTEST_GUILESS_MAIN(TestKernels)
#include "tst_kernels.moc"
