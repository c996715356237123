// DeepSeek-V2/V3 attention in our engine: expanded and absorbed forms agree, prefill and token-by-token decoding
// agree, the absorbed cache holds kv_lora_rank + qk_rope_head_dim values per token, and the logits match an
// independent numpy reference written from the public transformers code (tests/tools/deepseek_reference.py) on every
// layout the engines read: interleaved and half RoPE pairs, q_lora_rank null and set, yarn with mscale, DeepSeek-V2,
// attention biases.
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "engine/transformer.h"

#include <QtTest>

using namespace mla;

namespace {

struct AttentionCase {
    const char* name;
    test::DeepSeekShape shape;
};

std::vector<AttentionCase> cases()
{
    std::vector<AttentionCase> out;
    test::DeepSeekShape plain;
    out.push_back({"v3 interleaved, q_lora null", plain});
    test::DeepSeekShape half = plain;
    half.interleave = false;
    half.qLora = 10;
    out.push_back({"v3 half pairs, q_lora 10", half});
    test::DeepSeekShape yarn = plain;
    yarn.ropeConfig.scaling = RopeScaling::Yarn;
    yarn.ropeConfig.factor = 4.0;
    yarn.ropeConfig.originalMaxPositions = 16;
    yarn.ropeConfig.betaFast = 32.0;
    yarn.ropeConfig.betaSlow = 1.0;
    yarn.ropeConfig.mscale = 1.0;
    yarn.ropeConfig.mscaleAllDim = 0.707;
    yarn.ropeConfig.theta = 500.0;
    out.push_back({"v3 yarn with mscale", yarn});
    test::DeepSeekShape v2 = yarn;
    v2.architecture = "deepseek_v2";
    v2.qLora = 8;
    out.push_back({"v2 yarn, q_lora 8", v2});
    test::DeepSeekShape bias = plain;
    bias.bias = true;
    bias.nope = 0;
    out.push_back({"v3 attention bias, no nope part", bias});
    return out;
}

std::vector<int> someIds(std::int64_t vocab, int count)
{
    std::vector<int> ids;
    for (int i = 0; i < count; ++i)
        ids.push_back(static_cast<int>((i * 37 + 11) % vocab));
    return ids;
}

} // namespace

class TestDeepSeekAttention : public QObject {
    Q_OBJECT
private slots:
    void absorbedMatchesExpanded();
    void decodeMatchesPrefill();
    void absorbedCacheHoldsLatentAndRope();
    void matchesIndependentReference();
};

void TestDeepSeekAttention::absorbedMatchesExpanded()
{
    for (const AttentionCase& c : cases()) {
        const Model m = test::randomDeepSeekModel(c.shape, 5);
        const auto ids = someIds(c.shape.vocab, 24);
        const MatrixRM a = test::sequenceLogits(Transformer(m, MlaForm::Absorbed), ids);
        const MatrixRM e = test::sequenceLogits(Transformer(m, MlaForm::Expanded), ids);
        const double rel = test::relativeNormDifference(a.data(), e.data(), static_cast<std::size_t>(a.size()));
        QVERIFY2(rel < 1e-5, (std::string(c.name) + ": " + std::to_string(rel)).c_str());
    }
}

void TestDeepSeekAttention::decodeMatchesPrefill()
{
    for (const AttentionCase& c : cases()) {
        for (MlaForm form : {MlaForm::Absorbed, MlaForm::Expanded}) {
            const Transformer t(test::randomDeepSeekModel(c.shape, 9), form);
            const auto ids = someIds(c.shape.vocab, 16);
            const MatrixRM prefill = test::sequenceLogits(t, ids);
            KvCache cache = t.newCache(static_cast<std::int64_t>(ids.size()));
            for (std::size_t i = 0; i < ids.size(); ++i) {
                const MatrixRM step = t.forward(std::span<const int>(&ids[i], 1), cache, Logits::Last);
                const double rel = test::relativeNormDifference(step.data(), prefill.row(static_cast<Eigen::Index>(i)).data(),
                                                                static_cast<std::size_t>(step.size()));
                QVERIFY2(rel < 1e-5, (std::string(c.name) + " position " + std::to_string(i)).c_str());
            }
        }
    }
}

void TestDeepSeekAttention::absorbedCacheHoldsLatentAndRope()
{
    test::DeepSeekShape s;
    const Model m = test::randomDeepSeekModel(s, 3);
    QCOMPARE(m.config.attentionKind(), std::string("mla"));
    QCOMPARE(m.config.kvElementsPerToken(), s.layers * (s.kvLora + s.rope));
    const Transformer absorbed(m, MlaForm::Absorbed);
    QCOMPARE(absorbed.newCache(8).elementsPerToken(), s.layers * (s.kvLora + s.rope));
    const Transformer expanded(m, MlaForm::Expanded);
    QCOMPARE(expanded.newCache(8).elementsPerToken(), s.layers * s.heads * (s.nope + s.rope + s.value));
}

void TestDeepSeekAttention::matchesIndependentReference()
{
    std::vector<std::filesystem::path> folders;
    int i = 0;
    for (const AttentionCase& c : cases()) {
        const auto dir = test::scratchDir("deepseek-reference-" + std::to_string(i++));
        test::writeReferenceFixture(test::randomDeepSeekModel(c.shape, 17), dir / "model", someIds(c.shape.vocab, 40));
        folders.push_back(dir / "model");
    }
    std::string output;
    bool skipped = false;
    const bool ok = test::runDeepSeekReference(folders, output, skipped);
    if (skipped)
        QSKIP(output.c_str());
    QVERIFY2(ok, output.c_str());
}

QTEST_GUILESS_MAIN(TestDeepSeekAttention)
#include "tst_deepseek_attention.moc"
