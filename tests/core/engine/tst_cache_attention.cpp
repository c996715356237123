// Attention over cached rows (cache_attention.h) against a plain per-head reference in double precision: shared
// (latent) and per-KV-head terms, several terms, prefill and decode positions, a sliding window, contexts longer
// than one span; the same results on 1 and 2 threads; a quantised cache reads exactly its decoded values.
#include "common/test_support.h"
#include "engine/cache_attention.h"

#include <QtTest>

#include <omp.h>

#include <cmath>
#include <random>

using namespace mla;

namespace {

MatrixRM randomMatrix(std::int64_t rows, std::int64_t cols, std::mt19937_64& rng, float scale = 1.0f)
{
    std::normal_distribution<float> normal(0.0f, scale);
    MatrixRM m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i)
        m.data()[i] = normal(rng);
    return m;
}

struct Problem {
    AttentionShape shape;
    std::vector<MatrixRM> queries;  // per term [T, heads*width]
    std::vector<MatrixRM> keyRows;  // per term [n, W]
    std::vector<std::int64_t> widths;
    std::vector<bool> shared;
    MatrixRM valueRows;
    std::int64_t valueWidth = 0;
    bool valueShared = false;
};

Problem makeProblem(std::int64_t heads, std::int64_t group, std::int64_t p0, std::int64_t T, std::int64_t window, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    Problem p;
    p.shape.heads = heads;
    p.shape.group = group;
    p.shape.firstPosition = p0;
    p.shape.tokens = T;
    p.shape.slidingWindow = window;
    p.shape.scale = 0.25f;
    const std::int64_t kv = heads / group, n = p0 + T;
    // A per-KV-head term (RoPE keys), a shared term (a latent), and a shared value latent.
    p.widths = {6, 20};
    p.shared = {false, true};
    p.queries = {randomMatrix(T, heads * 6, rng), randomMatrix(T, heads * 20, rng, 0.5f)};
    p.keyRows = {randomMatrix(n, kv * 6, rng), randomMatrix(n, 20, rng)};
    p.valueRows = randomMatrix(n, 20, rng);
    p.valueWidth = 20;
    p.valueShared = true;
    return p;
}

// Per head and query row: logits summed over terms in double, masked softmax, weighted sum.
MatrixRM reference(const Problem& p)
{
    const auto& s = p.shape;
    const std::int64_t n = s.firstPosition + s.tokens;
    MatrixRM out(s.tokens, s.heads * p.valueWidth);
    for (std::int64_t h = 0; h < s.heads; ++h) {
        const std::int64_t kv = h / s.group;
        for (std::int64_t i = 0; i < s.tokens; ++i) {
            const std::int64_t position = s.firstPosition + i;
            const std::int64_t first = s.slidingWindow > 0 ? std::max<std::int64_t>(0, position + 1 - s.slidingWindow) : 0;
            std::vector<double> logit(static_cast<std::size_t>(n), -INFINITY);
            double top = -INFINITY;
            for (std::int64_t t = first; t <= position; ++t) {
                double sum = 0.0;
                for (std::size_t j = 0; j < p.queries.size(); ++j) {
                    const std::int64_t w = p.widths[j], offset = p.shared[j] ? 0 : kv * w;
                    for (std::int64_t c = 0; c < w; ++c)
                        sum += static_cast<double>(p.queries[j](i, h * w + c)) * p.keyRows[j](t, offset + c);
                }
                logit[static_cast<std::size_t>(t)] = sum * s.scale;
                top = std::max(top, logit[static_cast<std::size_t>(t)]);
            }
            double z = 0.0;
            for (std::int64_t t = first; t <= position; ++t)
                z += std::exp(logit[static_cast<std::size_t>(t)] - top);
            const std::int64_t offset = p.valueShared ? 0 : kv * p.valueWidth;
            for (std::int64_t c = 0; c < p.valueWidth; ++c) {
                double acc = 0.0;
                for (std::int64_t t = first; t <= position; ++t)
                    acc += std::exp(logit[static_cast<std::size_t>(t)] - top) / z * p.valueRows(t, offset + c);
                out(i, h * p.valueWidth + c) = static_cast<float>(acc);
            }
        }
    }
    return out;
}

struct Caches {
    std::vector<CacheRows> keys;
    CacheRows values;
};

Caches fill(const Problem& p, const KvCacheFormat& format)
{
    Caches c;
    for (const auto& rows : p.keyRows) {
        c.keys.emplace_back(rows.rows(), rows.cols(), format.rope);
        c.keys.back().store(0, rows);
    }
    c.values = CacheRows(p.valueRows.rows(), p.valueRows.cols(), format.latent);
    c.values.store(0, p.valueRows);
    return c;
}

MatrixRM attend(const Problem& p, const Caches& c)
{
    std::vector<CacheKeyTerm> terms;
    for (std::size_t j = 0; j < p.queries.size(); ++j)
        terms.push_back({&p.queries[j], &c.keys[j], p.widths[j], p.shared[j]});
    MatrixRM out;
    attendToCache(p.shape, terms, CacheValueTerm{&c.values, p.valueWidth, p.valueShared}, out);
    return out;
}

} // namespace

class TestCacheAttention : public QObject {
    Q_OBJECT
private slots:
    void matchesThePlainReference_data();
    void matchesThePlainReference();
    void perKvHeadValues();
    void sameResultsOnOneAndTwoThreads();
    void quantisedCacheReadsItsDecodedValues();
};

void TestCacheAttention::matchesThePlainReference_data()
{
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("group");
    QTest::addColumn<int>("p0");
    QTest::addColumn<int>("tokens");
    QTest::addColumn<int>("window");
    QTest::newRow("prefill, MHA") << 4 << 1 << 0 << 37 << 0;
    QTest::newRow("prefill after a prefix, GQA") << 6 << 3 << 11 << 9 << 0;
    QTest::newRow("decode, long context (many spans)") << 6 << 2 << 1500 << 1 << 0;
    QTest::newRow("decode, sliding window") << 4 << 2 << 900 << 1 << 128;
    QTest::newRow("prefill, sliding window") << 4 << 4 << 5 << 60 << 16;
}

void TestCacheAttention::matchesThePlainReference()
{
    QFETCH(int, heads);
    QFETCH(int, group);
    QFETCH(int, p0);
    QFETCH(int, tokens);
    QFETCH(int, window);
    const Problem p = makeProblem(heads, group, p0, tokens, window, static_cast<std::uint64_t>(heads * 100 + p0 + tokens));
    const MatrixRM got = attend(p, fill(p, KvCacheFormat{}));
    const MatrixRM want = reference(p);
    const double diff = test::relativeNormDifference(got.data(), want.data(), static_cast<std::size_t>(want.size()));
    QVERIFY2(diff < 2e-6, qPrintable(QString::number(diff)));
}

void TestCacheAttention::perKvHeadValues()
{
    Problem p = makeProblem(6, 2, 40, 3, 0, 77);
    std::mt19937_64 rng(3);
    p.valueRows = randomMatrix(43, 3 * 8, rng);
    p.valueWidth = 8;
    p.valueShared = false;
    p.shared = {false, false}; // the second term per KV head too: 3 KV heads of 20 columns
    p.keyRows[1] = randomMatrix(43, 3 * 20, rng);
    const MatrixRM got = attend(p, fill(p, KvCacheFormat{}));
    const MatrixRM want = reference(p);
    QVERIFY(test::relativeNormDifference(got.data(), want.data(), static_cast<std::size_t>(want.size())) < 2e-6);
}

void TestCacheAttention::sameResultsOnOneAndTwoThreads()
{
    const int before = omp_get_max_threads();
    for (const auto& format : {KvCacheFormat{}, KvCacheFormat::uniform({CacheFormat::Int4, 8})}) {
        for (auto [p0, T] : {std::pair{3000, 1}, std::pair{0, 300}}) {
            const Problem p = makeProblem(8, 2, p0, T, 0, 5);
            const Caches c = fill(p, format);
            omp_set_num_threads(1);
            const MatrixRM one = attend(p, c);
            omp_set_num_threads(2);
            const MatrixRM two = attend(p, c);
            QVERIFY(one == two);
        }
    }
    omp_set_num_threads(before);
}

void TestCacheAttention::quantisedCacheReadsItsDecodedValues()
{
    // Dequantisation on read is exactly attention over the decoded rows: the same result, bit for bit, as a float32
    // cache holding what the quantised one decodes to.
    const Problem p = makeProblem(6, 3, 700, 2, 0, 21);
    for (CacheFormat t : {CacheFormat::BF16, CacheFormat::Int8, CacheFormat::Int4}) {
        const Caches quantised = fill(p, KvCacheFormat::uniform({t, 16}));
        Problem decoded = p;
        for (std::size_t j = 0; j < p.keyRows.size(); ++j)
            decoded.keyRows[j] = quantised.keys[j].decoded(0, p.keyRows[j].rows());
        decoded.valueRows = quantised.values.decoded(0, p.valueRows.rows());
        QVERIFY(attend(p, quantised) == attend(decoded, fill(decoded, KvCacheFormat{})));
        // And the quantisation moved the result, by about what the format's step predicts.
        const MatrixRM exact = attend(p, fill(p, KvCacheFormat{}));
        const MatrixRM q = attend(p, quantised);
        const double diff = test::relativeNormDifference(q.data(), exact.data(), static_cast<std::size_t>(q.size()));
        const double expected = t == CacheFormat::BF16 ? 4e-3 : t == CacheFormat::Int8 ? 2e-2 : 0.2;
        QVERIFY2(diff > 0.0 && diff < expected, qPrintable(QStringLiteral("%1: %2").arg(cacheFormatName(t).data()).arg(diff)));
    }
}

QTEST_APPLESS_MAIN(TestCacheAttention)
#include "tst_cache_attention.moc"
