// conversionWarnings: valid settings that defeat the conversion are named before any work: a cache that grows over the
// original (in total and per layer, e.g. a DeepSeek-V3 latent of 57 with a wide shared RoPE head on small heads) and
// a latent wider than the measured rank of what it compresses.

#include "common/synthetic_analysis.h"
#include "conversion/settings_warnings.h"

#include <QTest>

using namespace mla;

namespace {

ConversionPreview uniformPreview(const ModelConfig& c, std::int64_t latent, std::int64_t ropeDims)
{
    ConversionPreview p;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        LayerPreview layer;
        layer.latentK = latent;
        layer.ropePairs = ropeDims / 2;
        layer.kvOriginal = 2 * c.kvHeads * c.headDim;
        layer.kvConverted = latent + c.kvHeads * ropeDims;
        p.layers.push_back(layer);
        p.kv.originalTotal += layer.kvOriginal;
        p.kv.convertedTotal += layer.kvConverted;
    }
    return p;
}

bool anyContains(const std::vector<std::string>& warnings, const std::string& text)
{
    for (const std::string& w : warnings)
        if (w.find(text) != std::string::npos)
            return true;
    return false;
}

} // namespace

class TestSettingsWarnings : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void nothingToSayAboutASaving()
    {
        const ModelConfig c = test::sixLayerShape();
        const AnalysisResult a = test::syntheticAnalysis(c);
        QVERIFY(conversionWarnings(c, uniformPreview(c, 64, 4), &a).empty());
        QVERIFY(conversionWarnings(c, uniformPreview(c, 64, 4), nullptr).empty());
    }

    void aGrowingCacheIsNamed()
    {
        const ModelConfig c = test::sixLayerShape(); // 4 KV heads of 32: 256 elements per layer
        ConversionPreview p = uniformPreview(c, 64, 4);
        p.layers[2].latentK = 250;
        p.layers[2].kvConverted = 250 + 16;
        p.kv.convertedTotal += 250 - 64;
        std::vector<std::string> w = conversionWarnings(c, p, nullptr);
        QCOMPARE(w.size(), std::size_t(1)); // one layer grows, the total does not
        QVERIFY2(anyContains(w, "layer 2 cache") && anyContains(w, "266") && anyContains(w, "256"), w.front().c_str());
        // Every layer over: the total is named as well.
        w = conversionWarnings(c, uniformPreview(c, 250, 4), nullptr);
        QCOMPARE(w.size(), std::size_t(2));
        QVERIFY(anyContains(w, "more than the original's 1536"));
        QVERIFY(anyContains(w, "layers 0, 1, 2, 3, 4, 5 cache"));
    }

    void aLatentWiderThanTheRankIsNamed()
    {
        const ModelConfig c = test::sixLayerShape();
        AnalysisResult a = test::syntheticAnalysis(c);
        auto& joint = a.layers[1].weightSpectra.joint;
        QVERIFY(joint.size() > 100);
        std::fill(joint.begin() + 100, joint.end(), 0.0); // rank 100
        QCOMPARE(numericalRank(joint), std::int64_t(100));
        QVERIFY(conversionWarnings(c, uniformPreview(c, 100, 4), &a).empty());
        const std::vector<std::string> w = conversionWarnings(c, uniformPreview(c, 120, 4), &a);
        QCOMPARE(w.size(), std::size_t(1));
        QVERIFY2(anyContains(w, "layer 1 would be rank-deficient") && anyContains(w, "rank 100") && anyContains(w, "20 of its columns"),
                 w.front().c_str());
    }

    void unrealisableSettingsAreTheValidationsToReport()
    {
        const ModelConfig c = test::sixLayerShape();
        ConversionPreview p = uniformPreview(c, 250, 4);
        p.problem = "--latent-dim 9999 is outside the allowed range";
        QVERIFY(conversionWarnings(c, p, nullptr).empty());
    }
};

QTEST_MAIN(TestSettingsWarnings)
#include "tst_settings_warnings.moc"
