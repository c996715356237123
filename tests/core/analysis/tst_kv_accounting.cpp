#include "analysis/kv_accounting.h"
#include "common/test_support.h"
#include "conversion/conversion_settings.h"

#include <QtTest>

using namespace mla;

namespace {

ModelConfig smollm135m()
{
    ModelConfig c;
    c.hidden = 576;
    c.ffn = 1536;
    c.layers = 30;
    c.heads = 9;
    c.kvHeads = 3;
    c.headDim = 64;
    c.vocab = 49152;
    return c;
}

MlaLayerConfig layer(std::int64_t kvHeads, std::int64_t pairs, LatentMethod m, std::int64_t k, std::int64_t v)
{
    MlaLayerConfig l;
    for (std::int64_t h = 0; h < kvHeads; ++h) {
        std::vector<int> kept;
        for (std::int64_t j = 0; j < pairs; ++j)
            kept.push_back(static_cast<int>(j));
        l.keptPairs.push_back(kept);
    }
    l.method = m;
    l.latentK = k;
    l.latentV = v;
    return l;
}

} // namespace

class TestKvAccounting : public QObject {
    Q_OBJECT
private slots:
    void methodDocumentExample();
    void paperTableSavings_data();
    void paperTableSavings();
    void uncompressedSidesAreCounted();
    void quantisedBytesIncludeGroupOverhead();
    void latentForSavingInvertsTheFormula();
};

void TestKvAccounting::methodDocumentExample()
{
    // SmolLM-135M, p = 4 pairs (r = 8 dims), d_kv = 8: 2*3*64 = 384 vs 3*8 + 3*8 = 48, -87.5%.
    const ModelConfig c = smollm135m();
    const MlaLayerConfig l = layer(3, 4, LatentMethod::Joint, 3 * 8, 0);
    QCOMPARE(l.cacheElements(3, 64), std::int64_t(48));
    const KvAccount a = kvAccount(c, std::vector<MlaLayerConfig>(30, l));
    QCOMPARE(a.originalTotal, std::int64_t(384 * 30));
    QCOMPARE(a.convertedTotal, std::int64_t(48 * 30));
    QCOMPARE(a.saving(), 0.875);
}

void TestKvAccounting::paperTableSavings_data()
{
    QTest::addColumn<int>("dkvDivisor");
    QTest::addColumn<double>("saving");
    QTest::newRow("d_kv = d_h/2") << 2 << 0.6875;
    QTest::newRow("d_kv = d_h/4") << 4 << 0.8125;
    QTest::newRow("d_kv = d_h/8") << 8 << 0.875;
}

void TestKvAccounting::paperTableSavings()
{
    // The paper's table 1: p = d_h/16 pairs (r = d_h/8 dims), kept fraction (r + d_kv) / (2 d_h).
    QFETCH(int, dkvDivisor);
    QFETCH(double, saving);
    for (std::int64_t headDim : {64, 128}) {
        ModelConfig c = smollm135m();
        c.headDim = headDim;
        const MlaLayerConfig l = layer(c.kvHeads, headDim / 16, LatentMethod::Joint, c.kvHeads * headDim / dkvDivisor, 0);
        QCOMPARE(kvAccount(c, std::vector<MlaLayerConfig>(30, l)).saving(), saving);
    }
}

void TestKvAccounting::uncompressedSidesAreCounted()
{
    // kv 2, head 16, p 2 (r 4): key-only caches rope 8 + latent 10 + full v 32.
    QCOMPARE(layer(2, 2, LatentMethod::Key, 10, 0).cacheElements(2, 16), std::int64_t(8 + 10 + 32));
    QCOMPARE(layer(2, 2, LatentMethod::Value, 0, 10).cacheElements(2, 16), std::int64_t(8 + 24 + 10));
    QCOMPARE(layer(2, 2, LatentMethod::Split, 5, 5).cacheElements(2, 16), std::int64_t(8 + 10));
    QCOMPARE(layer(2, 2, LatentMethod::None, 0, 0).cacheElements(2, 16), std::int64_t(64));
    QCOMPARE(layer(2, 8, LatentMethod::None, 0, 0).cacheElements(2, 16), std::int64_t(64));
}

void TestKvAccounting::quantisedBytesIncludeGroupOverhead()
{
    QCOMPARE(cacheBytesForElements(128, CacheFormat::F32), 512.0);
    QCOMPARE(cacheBytesForElements(128, CacheFormat::BF16), 256.0);
    QCOMPARE(cacheBytesForElements(128, CacheFormat::Int8, 64), 128.0 + 2 * 4.0);
    QCOMPARE(cacheBytesForElements(128, CacheFormat::Int4, 64), 64.0 + 2 * 4.0);
    QCOMPARE(cacheBytesForElements(100, CacheFormat::Int4, 64), 50.0 + 2 * 4.0); // partial group still pays
    const KvAccount a = kvAccount(smollm135m(), std::vector<MlaLayerConfig>(30, layer(3, 4, LatentMethod::Joint, 24, 0)));
    QCOMPARE(a.convertedCacheBytes(4096, 8, CacheFormat::BF16), 48.0 * 30 * 2 * 4096 * 8);
}

void TestKvAccounting::latentForSavingInvertsTheFormula()
{
    ModelConfig c = smollm135m();
    // 75%: 96 elements per layer, minus 3*2*4 rope = 72 latent.
    QCOMPARE(latentForSaving(c, 4, LatentMethod::Joint, 0.75), std::int64_t(72));
    ModelConfig stories = smollm135m();
    stories.kvHeads = 4;
    stories.heads = 8;
    stories.headDim = 8;
    QCOMPARE(latentForSaving(stories, 1, LatentMethod::Joint, 0.75), std::int64_t(8)); // the example
    QVERIFY_THROWS_EXCEPTION(Error, latentForSaving(stories, 4, LatentMethod::Joint, 0.9));
    QVERIFY_THROWS_EXCEPTION(Error, latentForSaving(stories, 1, LatentMethod::None, 0.5));
}

QTEST_APPLESS_MAIN(TestKvAccounting)
#include "tst_kv_accounting.moc"
