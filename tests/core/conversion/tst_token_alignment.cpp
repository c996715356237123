// The token-level diff of the sanity check's generations (core/conversion/token_alignment.h): one inserted, dropped or
// changed token marks only itself, the common rows are a longest common subsequence (against an independent
// exhaustive reference on small random sequences), every token appears once, and memory stays bounded.
#include "conversion/token_alignment.h"

#include <QtTest>

#include <functional>
#include <random>

using namespace mla;

namespace {

// The LCS length by plain recursion with memo over (i, j): a second, independent computation.
int referenceLcs(const std::vector<int>& a, const std::vector<int>& b)
{
    std::vector<std::vector<int>> memo(a.size() + 1, std::vector<int>(b.size() + 1, -1));
    std::function<int(std::size_t, std::size_t)> go = [&](std::size_t i, std::size_t j) -> int {
        if (i == a.size() || j == b.size())
            return 0;
        int& m = memo[i][j];
        if (m < 0)
            m = a[i] == b[j] ? 1 + go(i + 1, j + 1) : std::max(go(i + 1, j), go(i, j + 1));
        return m;
    };
    return go(0, 0);
}

// Every index of both sides once and in order, Same rows equal, Changed rows different, and a count that matches.
void verifyValid(const TokenAlignment& t, const std::vector<int>& a, const std::vector<int>& b)
{
    std::int64_t nextA = 0, nextB = 0, same = 0;
    for (const AlignedToken& r : t.rows) {
        if (r.op != AlignOp::OnlySecond) {
            QCOMPARE(r.first, nextA);
            ++nextA;
        } else {
            QCOMPARE(r.first, std::int64_t(-1));
        }
        if (r.op != AlignOp::OnlyFirst) {
            QCOMPARE(r.second, nextB);
            ++nextB;
        } else {
            QCOMPARE(r.second, std::int64_t(-1));
        }
        if (r.op == AlignOp::Same) {
            QCOMPARE(a[static_cast<std::size_t>(r.first)], b[static_cast<std::size_t>(r.second)]);
            ++same;
        }
        if (r.op == AlignOp::Changed)
            QVERIFY(a[static_cast<std::size_t>(r.first)] != b[static_cast<std::size_t>(r.second)]);
    }
    QCOMPARE(nextA, std::int64_t(a.size()));
    QCOMPARE(nextB, std::int64_t(b.size()));
    QCOMPARE(same, t.common);
}

std::vector<AlignOp> ops(const TokenAlignment& t)
{
    std::vector<AlignOp> out;
    for (const AlignedToken& r : t.rows)
        out.push_back(r.op);
    return out;
}

} // namespace

class TestTokenAlignment : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void identicalAndEmpty()
    {
        const std::vector<int> a{5, 6, 7};
        TokenAlignment t = alignTokens(a, a);
        QCOMPARE(ops(t), (std::vector<AlignOp>(3, AlignOp::Same)));
        QCOMPARE(t.common, std::int64_t(3));
        t = alignTokens({}, {});
        QVERIFY(t.rows.empty());
        t = alignTokens(a, {});
        QCOMPARE(ops(t), (std::vector<AlignOp>(3, AlignOp::OnlyFirst)));
        verifyValid(t, a, {});
        t = alignTokens({}, a);
        QCOMPARE(ops(t), (std::vector<AlignOp>(3, AlignOp::OnlySecond)));
    }

    void oneInsertedTokenMarksOnlyItself()
    {
        // Positionally every token after the insertion differs; aligned, only the inserted one does.
        const std::vector<int> original{1, 2, 3, 4, 5, 6, 7, 8};
        const std::vector<int> converted{1, 2, 3, 99, 4, 5, 6, 7, 8};
        const TokenAlignment t = alignTokens(original, converted);
        verifyValid(t, original, converted);
        QCOMPARE(t.common, std::int64_t(8));
        QCOMPARE(t.rows.size(), std::size_t(9));
        QCOMPARE(t.rows[3].op, AlignOp::OnlySecond);
        QCOMPARE(t.rows[3].second, std::int64_t(3));
        for (std::size_t k = 0; k < t.rows.size(); ++k)
            QVERIFY(k == 3 || t.rows[k].op == AlignOp::Same);
        // And one dropped token.
        const TokenAlignment d = alignTokens(converted, original);
        verifyValid(d, converted, original);
        QCOMPARE(d.rows[3].op, AlignOp::OnlyFirst);
        QCOMPARE(d.common, std::int64_t(8));
    }

    void changedTokensPairUp()
    {
        const std::vector<int> a{1, 2, 10, 11, 12, 3};
        const std::vector<int> b{1, 2, 20, 3};
        const TokenAlignment t = alignTokens(a, b);
        verifyValid(t, a, b);
        QCOMPARE(ops(t), (std::vector<AlignOp>{AlignOp::Same, AlignOp::Same, AlignOp::Changed, AlignOp::OnlyFirst, AlignOp::OnlyFirst, AlignOp::Same}));
        QCOMPARE(t.rows[2].first, std::int64_t(2));
        QCOMPARE(t.rows[2].second, std::int64_t(2));
    }

    void longestCommonSubsequenceAgainstAReference()
    {
        std::mt19937 rng(12345);
        for (int trial = 0; trial < 300; ++trial) {
            std::uniform_int_distribution<int> len(0, 12), tok(0, trial % 3 == 0 ? 2 : 5);
            std::vector<int> a(static_cast<std::size_t>(len(rng))), b(static_cast<std::size_t>(len(rng)));
            for (int& x : a)
                x = tok(rng);
            for (int& x : b)
                x = tok(rng);
            const TokenAlignment t = alignTokens(a, b);
            QVERIFY(t.exact);
            verifyValid(t, a, b);
            QCOMPARE(t.common, std::int64_t(referenceLcs(a, b)));
        }
    }

    void boundedMemoryForLongGenerations()
    {
        // 4096 tokens each (the sanity view's largest generation), differing in the middle: still exact.
        std::vector<int> a(4096), b(4096);
        for (int i = 0; i < 4096; ++i) {
            a[static_cast<std::size_t>(i)] = i % 97;
            b[static_cast<std::size_t>(i)] = i < 10 || i >= 4090 ? i % 97 : (i * 7) % 89;
        }
        TokenAlignment t = alignTokens(a, b);
        QVERIFY(t.exact);
        verifyValid(t, a, b);
        // Past the table's bound the middle is aligned by position, and says so.
        std::vector<int> c(5000, 1), d(5000, 2);
        c.front() = d.front() = 0;
        t = alignTokens(c, d);
        QVERIFY(!t.exact);
        verifyValid(t, c, d);
        QCOMPARE(t.common, std::int64_t(1));
    }
};

QTEST_MAIN(TestTokenAlignment)
#include "tst_token_alignment.moc"
