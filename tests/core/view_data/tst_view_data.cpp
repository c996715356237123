// The workbench's view data, without Qt: the RoPE heatmap grid (values of each measure, kept cells, one head or all),
// pair frequencies, retained energy from the closed-form error curves, the rank a latent width puts on each side
// (the converter's split), the spectra a method truncates, memory-plot contexts and cache curves.
#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "model/rope.h"
#include "view_data/view_data.h"

#include <QtTest>

#include <cmath>
#include <numbers>

using namespace mla;
using namespace mla::view;

namespace {

ModelConfig shape()
{
    ModelConfig c;
    c.hidden = 256;
    c.layers = 3;
    c.heads = 8;
    c.kvHeads = 4;
    c.headDim = 16;
    c.vocab = 1000;
    c.maxPositions = 2048;
    c.ffn = 688;
    return c;
}

} // namespace

class TestViewData : public QObject {
    Q_OBJECT
    AnalysisResult m_analysis;

private Q_SLOTS:
    void initTestCase() { m_analysis = test::syntheticAnalysis(shape()); }

    void scoreGridOfEveryHead()
    {
        const ModelConfig& c = m_analysis.config;
        const ScoreGrid g = ropeScoreGrid(m_analysis, ScoreMeasure::TwoNorm, -1, m_analysis.selections());
        QCOMPARE(g.rows, c.layers);
        QCOMPARE(g.heads, c.kvHeads);
        QCOMPARE(g.columns, c.kvHeads * c.pairsPerHead());
        double maximum = 0.0;
        for (std::int64_t l = 0; l < g.rows; ++l) {
            const LayerAnalysis& layer = m_analysis.layers[static_cast<std::size_t>(l)];
            for (std::int64_t col = 0; col < g.columns; ++col) {
                const std::int64_t kv = g.headOfColumn(col), j = g.pairOfColumn(col);
                QCOMPARE(g.value(l, col), layer.scores.perKvHead(kv, j));
                maximum = std::max(maximum, g.value(l, col));
                const auto& kept = layer.selection[static_cast<std::size_t>(kv)];
                QCOMPARE(g.isKept(l, col), std::find(kept.begin(), kept.end(), static_cast<int>(j)) != kept.end());
            }
        }
        QCOMPARE(g.maximum, maximum);
        QVERIFY(g.minPositive > 0.0 && g.minPositive <= g.maximum);
    }

    void scoreGridMeasuresOfOneHead()
    {
        const ModelConfig& c = m_analysis.config;
        const LayerRopeScores& s = m_analysis.layers[1].scores;
        const ScoreGrid q = ropeScoreGrid(m_analysis, ScoreMeasure::QueryNorm, 2, {});
        QCOMPARE(q.heads, std::int64_t(1));
        QCOMPARE(q.firstHead, std::int64_t(2));
        QCOMPARE(q.columns, c.pairsPerHead());
        // The query norm of a KV head sums its group's query heads (2 query heads per KV head here).
        QCOMPARE(q.value(1, 3), s.queryNorm(4, 3) + s.queryNorm(5, 3));
        QCOMPARE(ropeScoreGrid(m_analysis, ScoreMeasure::KeyNorm, 2, {}).value(1, 3), s.keyNorm(2, 3));
        QCOMPARE(ropeScoreGrid(m_analysis, ScoreMeasure::RotationLoss, 2, {}).value(1, 3), s.rotationLoss(2, 3));
        for (std::uint8_t k : q.kept)
            QCOMPARE(k, std::uint8_t(0)); // no selection given: nothing outlined
        ScoreGrid g = q;
        std::vector<LayerPairSelection> selections(3, LayerPairSelection(4, std::vector<int>{0, 7}));
        markKept(g, selections);
        QVERIFY(g.isKept(0, 0) && g.isKept(2, 7) && !g.isKept(1, 3));
        QCOMPARE(g.values, q.values);
    }

    void frequenciesAndEnergy()
    {
        const ModelConfig& c = m_analysis.config;
        const auto f = pairFrequencies(c);
        QCOMPARE(f.size(), std::size_t(c.pairsPerHead()));
        for (std::size_t j = 0; j < f.size(); ++j) {
            // w_j = theta^(-2j / d_h), wavelength 2 pi / w_j.
            QVERIFY(std::abs(f[j].frequency - std::pow(c.rope.theta, -2.0 * static_cast<double>(j) / static_cast<double>(c.headDim))) < 1e-6);
            QVERIFY(std::abs(f[j].wavelength - 2.0 * std::numbers::pi / f[j].frequency) < 1e-6 * f[j].wavelength);
        }
        const KeyValueSpectra& s = m_analysis.layers[0].weightSpectra;
        const auto energy = retainedEnergy(s, SpectrumKind::Key);
        QCOMPARE(energy.size(), s.key.size() + 1);
        double total = 0.0;
        for (double v : s.key)
            total += v * v;
        double kept = 0.0;
        for (std::size_t k = 0; k < energy.size(); ++k) {
            QVERIFY(std::abs(energy[k] - kept / total) < 1e-12); // sum of the k largest s_i^2 over all
            if (k < s.key.size())
                kept += s.key[k] * s.key[k];
        }
        QCOMPARE(&spectrumValues(s, SpectrumKind::Value), &s.value);
        QCOMPARE(&spectrumValues(s, SpectrumKind::Joint), &s.joint);
    }

    void ranksFollowTheConvertersSplit()
    {
        for (std::int64_t latent : {2, 7, 16, 33}) {
            const LatentSplit split = splitLatent(LatentMethod::Split, latent);
            QCOMPARE(rankForLatent(LatentMethod::Split, SpectrumKind::Key, latent), split.key);
            QCOMPARE(rankForLatent(LatentMethod::Split, SpectrumKind::Value, latent), split.value);
            QCOMPARE(split.key + split.value, latent);
            QCOMPARE(rankForLatent(LatentMethod::Joint, SpectrumKind::Joint, latent), latent);
            QCOMPARE(rankForLatent(LatentMethod::Split, SpectrumKind::Key, latentForRank(LatentMethod::Split, SpectrumKind::Key, latent)), latent);
            QCOMPARE(latentForRank(LatentMethod::Joint, SpectrumKind::Joint, latent), latent);
        }
        QVERIFY(methodUsesSpectrum(LatentMethod::Joint, SpectrumKind::Joint) && !methodUsesSpectrum(LatentMethod::Joint, SpectrumKind::Key));
        QVERIFY(methodUsesSpectrum(LatentMethod::Split, SpectrumKind::Key) && methodUsesSpectrum(LatentMethod::Split, SpectrumKind::Value));
        QVERIFY(!methodUsesSpectrum(LatentMethod::Key, SpectrumKind::Value) && !methodUsesSpectrum(LatentMethod::None, SpectrumKind::Joint));
        QCOMPARE(primarySpectrum(LatentMethod::Value), SpectrumKind::Value);
        QCOMPARE(primarySpectrum(LatentMethod::Split), SpectrumKind::Key);
        QCOMPARE(primarySpectrum(LatentMethod::Joint), SpectrumKind::Joint);
    }

    void memoryCurves()
    {
        ModelConfig c = shape();
        c.maxPositions = 5000;
        const auto contexts = contextGrid(c, 1000);
        QCOMPARE(contexts.front(), std::int64_t(128));
        QCOMPARE(contexts.back(), std::int64_t(8192)); // the first power of two at or past the model's context
        for (std::size_t i = 1; i < contexts.size(); ++i)
            QCOMPARE(contexts[i], 2 * contexts[i - 1]);
        const ConversionSettings s;
        std::vector<MlaLayerConfig> layers = resolveLayerConfigs(c, s, std::vector<LayerPairSelection>(3, LayerPairSelection(4, {0})));
        const KvAccount account = kvAccount(c, layers);
        const auto original = cacheBytesCurve(account, false, contexts, 2, CacheFormat::BF16);
        const auto converted = cacheBytesCurve(account, true, contexts, 2, CacheFormat::BF16);
        for (std::size_t i = 0; i < contexts.size(); ++i) {
            QCOMPARE(original[i], account.originalCacheBytes(contexts[i], 2, CacheFormat::BF16));
            QCOMPARE(converted[i], static_cast<double>(account.convertedTotal) * 2.0 * 2.0 * static_cast<double>(contexts[i]));
        }
        // The model as it is: 2 bytes per element in BF16.
        QCOMPARE(cacheBytesPerToken(c, CacheFormat::BF16), 2.0 * static_cast<double>(c.kvElementsPerToken()));
    }

    void memoryCurvesOfAWholeCacheFormat()
    {
        const ModelConfig c = shape();
        const auto contexts = contextGrid(c, 1000);
        const KvAccount account = kvAccount(c, resolveLayerConfigs(c, ConversionSettings{}, std::vector<LayerPairSelection>(3, LayerPairSelection(4, {0}))));
        // `--kv-cache int4` is the int4 latent with its default RoPE part: both overloads give the same bytes.
        const KvCacheFormat int4 = KvCacheFormat::withDefaultRope({CacheFormat::Int4, 64});
        QVERIFY(int4.rope.type != CacheFormat::Int4); // the RoPE keys default to more bits (docs/kv-cache.md)
        QCOMPARE(cacheBytesCurve(account, true, contexts, 3, int4), cacheBytesCurve(account, true, contexts, 3, CacheFormat::Int4));
        QCOMPARE(cacheBytesCurve(account, false, contexts, 3, int4), cacheBytesCurve(account, false, contexts, 3, CacheFormat::Int4));
        // A RoPE part of its own changes the converted model's bytes (its RoPE keys), not the original's (it has none).
        const KvCacheFormat int4Rope4 = KvCacheFormat::uniform({CacheFormat::Int4, 64});
        QVERIFY(cacheBytesCurve(account, true, contexts, 1, int4Rope4)[0] < cacheBytesCurve(account, true, contexts, 1, int4)[0]);
        QCOMPARE(cacheBytesCurve(account, false, contexts, 1, int4Rope4), cacheBytesCurve(account, false, contexts, 1, int4));
        const auto f32 = cacheBytesCurve(account, true, contexts, 1, KvCacheFormat{});
        for (std::size_t i = 0; i < contexts.size(); ++i)
            QCOMPARE(f32[i], 4.0 * static_cast<double>(account.convertedTotal) * static_cast<double>(contexts[i]));
    }

    void measuredCachesOfASanityReport()
    {
        SanityReport r;
        r.originalKvBytesPerToken = 2560;
        r.convertedKvBytesPerToken = 640;
        r.withCache.format = "int4/32+rope:int8/32";
        r.withCache.kvBytesPerToken = 130;
        r.originalBf16KvBytesPerToken = 1280;
        auto m = measuredCaches(r);
        QCOMPARE(m.size(), std::size_t(4));
        QVERIFY(!m[0].converted && m[0].format.isFloat32() && m[0].bytesPerToken == 2560.0);
        QVERIFY(m[1].converted && m[1].format.isFloat32() && m[1].bytesPerToken == 640.0);
        QVERIFY(m[2].converted && m[2].bytesPerToken == 130.0);
        QCOMPARE(m[2].format.latent, (CachePartFormat{CacheFormat::Int4, 32}));
        QCOMPARE(m[2].format.rope, (CachePartFormat{CacheFormat::Int8, 32}));
        QCOMPARE(m[2].formatName, std::string("int4/32+rope:int8/32"));
        QVERIFY(!m[3].converted && m[3].format == KvCacheFormat::uniform({CacheFormat::BF16}) && m[3].bytesPerToken == 1280.0);
        // A float32 check measures the converted model once; an older session without the BF16 figure has no such point.
        r.withCache.format = "f32";
        r.originalBf16KvBytesPerToken = 0;
        m = measuredCaches(r);
        QCOMPARE(m.size(), std::size_t(2));
        QCOMPARE(measuredCaches(SanityReport{}).size(), std::size_t(0));
        const std::vector<std::int64_t> contexts{128, 256, 4096};
        QCOMPARE(measuredBytesCurve(130, contexts, 2), (std::vector<double>{130.0 * 256, 130.0 * 512, 130.0 * 8192}));
    }
};

QTEST_MAIN(TestViewData)
#include "tst_view_data.moc"
