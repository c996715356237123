// Reading DeepSeek-V2/V3 dense checkpoints: every config field as transformers reads it (defaults included), the
// writer and the reader agreeing bit for bit, and hostile input refused with an error naming the file and the field:
// mixture-of-experts layers, widths that disagree, rope scalings other than yarn, a missing kv_a_layernorm.
#include "common/deepseek_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "util/error.h"
#include "util/json_util.h"

#include <QtTest>

#include <cstring>

using namespace mla;

namespace {

nlohmann::json denseV3()
{
    return nlohmann::json::parse(R"({
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "kv_lora_rank": 12, "q_lora_rank": null,
        "qk_rope_head_dim": 4, "qk_nope_head_dim": 6, "v_head_dim": 5, "first_k_dense_replace": 2,
        "n_routed_experts": 8, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000,
        "rope_scaling": null, "rope_interleave": true, "tie_word_embeddings": false, "bos_token_id": 0,
        "eos_token_id": 1})");
}

std::string errorOf(const nlohmann::json& j)
{
    try {
        configFromHuggingFace(j, "config.json");
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestDeepSeekConfig : public QObject {
    Q_OBJECT
private slots:
    void readsDenseConfigs();
    void configRoundTrips();
    void writerAndReaderAgreeBitForBit();
    void refusesHostileConfigs_data();
    void refusesHostileConfigs();
    void refusesMissingLatentNorm();
};

void TestDeepSeekConfig::readsDenseConfigs()
{
    const ModelConfig c = configFromHuggingFace(denseV3(), "config.json");
    QCOMPARE(c.architecture, std::string("deepseek_v3"));
    QVERIFY(c.deepseek.has_value());
    QCOMPARE(c.deepseek->kvLoraRank, std::int64_t(12));
    QCOMPARE(c.deepseek->qLoraRank, std::int64_t(0));
    QCOMPARE(c.headDim, std::int64_t(10));
    QCOMPARE(c.attentionKind(), std::string("mla"));
    QCOMPARE(c.kvElementsPerToken(), std::int64_t(2 * (12 + 4)));
    QCOMPARE(c.attentionOutputDim(), std::int64_t(4 * 5));

    // Absent keys take transformers' defaults: q_lora_rank 1536 (a query latent), interleaved pairs.
    nlohmann::json j = denseV3();
    j.erase("q_lora_rank");
    j.erase("rope_interleave");
    ModelConfig d = configFromHuggingFace(j, "config.json");
    QCOMPARE(d.deepseek->qLoraRank, std::int64_t(1536));
    QVERIFY(d.deepseek->ropeInterleave);

    // DeepSeek-V2: always interleaved, no yarn mscale in the softmax scale; the class name alone identifies it.
    j = denseV3();
    j.erase("model_type");
    j["architectures"] = {"DeepseekV2ForCausalLM"};
    j["rope_interleave"] = false;
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 16}, {"mscale_all_dim", 1.0}};
    d = configFromHuggingFace(j, "config.json");
    QCOMPARE(d.architecture, std::string("deepseek_v2"));
    QVERIFY(d.deepseek->ropeInterleave);
    QVERIFY(!d.deepseek->yarnMscaleInScale);
    QVERIFY(d.rope.scaling == RopeScaling::Yarn);
    QCOMPARE(deepSeekSoftmaxScale(d), 1.0 / std::sqrt(10.0));
    j["model_type"] = "deepseek_v3";
    d = configFromHuggingFace(j, "config.json");
    const double m = 0.1 * std::log(4.0) + 1.0;
    QVERIFY(std::abs(deepSeekSoftmaxScale(d) - m * m / std::sqrt(10.0)) < 1e-12);
}

void TestDeepSeekConfig::configRoundTrips()
{
    test::DeepSeekShape s;
    s.qLora = 10;
    s.interleave = false;
    s.ropeConfig.scaling = RopeScaling::Yarn;
    s.ropeConfig.factor = 8.0;
    s.ropeConfig.originalMaxPositions = 32;
    s.ropeConfig.mscale = 1.0;
    s.ropeConfig.mscaleAllDim = 1.0;
    const ModelConfig c = test::randomDeepSeekModel(s, 1).config;
    const nlohmann::ordered_json j = configToHuggingFace(c);
    QVERIFY(!j.contains("head_dim")); // transformers would take it for the rotary width
    QCOMPARE(j["first_k_dense_replace"].get<std::int64_t>(), c.layers);
    QVERIFY(j["n_routed_experts"].is_number_integer());
    const ModelConfig back = configFromHuggingFace(nlohmann::json::parse(j.dump()), "config.json");
    QVERIFY(back.deepseek == c.deepseek);
    QCOMPARE(back.rope.factor, c.rope.factor);
    QCOMPARE(back.rope.mscaleAllDim, c.rope.mscaleAllDim);
    QCOMPARE(back.headDim, c.headDim);
}

void TestDeepSeekConfig::writerAndReaderAgreeBitForBit()
{
    for (bool lora : {false, true}) {
        test::DeepSeekShape s;
        s.qLora = lora ? 8 : 0;
        s.bias = lora;
        const Model m = test::randomDeepSeekModel(s, 7);
        const auto dir = test::scratchDir(std::string("deepseek-roundtrip-") + (lora ? "lora" : "plain")) / "out";
        ExportOptions e;
        e.folder = dir;
        exportModel(m, e);
        const Model back = loadModel(dir);
        QVERIFY(back.config.deepseek == m.config.deepseek);
        for (const PlannedTensor& p : tensorPlan(m.config)) {
            const Tensor a = modelTensor(m, p.role, p.layer), b = modelTensor(back, p.role, p.layer);
            QVERIFY(a.shape() == b.shape());
            QVERIFY2(std::memcmp(a.data(), b.data(), a.bytes()) == 0, std::string(tensorRoleLabel(p.role)).c_str());
        }
        const auto names = SafetensorsCollection::open(dir).names();
        QVERIFY(std::find(names.begin(), names.end(), "lm_head.weight") != names.end());
        QVERIFY(std::find(names.begin(), names.end(), "model.layers.1.self_attn.kv_a_layernorm.weight") != names.end());
    }
}

void TestDeepSeekConfig::refusesHostileConfigs_data()
{
    QTest::addColumn<QString>("patch");
    QTest::addColumn<QString>("expected");
    QTest::newRow("moe layers") << R"({"first_k_dense_replace": 1})" << "first_k_dense_replace is 1";
    QTest::newRow("moe by default") << R"({"first_k_dense_replace": null, "num_hidden_layers": 4})"
                                    << "first_k_dense_replace is 3 (the default when absent) < num_hidden_layers 4 with n_routed_experts 8";
    QTest::newRow("kv heads") << R"({"num_key_value_heads": 2})" << "num_key_value_heads 2 differs";
    QTest::newRow("head_dim") << R"({"head_dim": 10})" << "head_dim 10 differs from qk_rope_head_dim 4";
    QTest::newRow("odd rope") << R"({"qk_rope_head_dim": 5})" << "qk_rope_head_dim 5 must be a positive even number";
    QTest::newRow("no latent") << R"({"kv_lora_rank": 0})" << "kv_lora_rank 0";
    QTest::newRow("q_lora 0") << R"({"q_lora_rank": 0})" << "q_lora_rank must be null or positive";
    QTest::newRow("linear rope") << R"({"rope_scaling": {"type": "linear", "factor": 2}})" << "not supported for DeepSeek";
    QTest::newRow("yarn without factor") << R"({"rope_scaling": {"type": "yarn"}})" << "rope_scaling.factor is missing";
    QTest::newRow("activation") << R"({"hidden_act": "gelu"})" << "hidden_act 'gelu'";
    QTest::newRow("value width") << R"({"v_head_dim": -3})" << "v_head_dim -3 must be positive";
}

void TestDeepSeekConfig::refusesHostileConfigs()
{
    QFETCH(QString, patch);
    QFETCH(QString, expected);
    nlohmann::json j = denseV3();
    const nlohmann::json changes = nlohmann::json::parse(patch.toStdString());
    for (const auto& [key, value] : changes.items()) {
        if (value.is_null() && key == "first_k_dense_replace")
            j.erase(key);
        else
            j[key] = value;
    }
    const std::string message = errorOf(j);
    QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
    QVERIFY2(message.rfind("config.json: ", 0) == 0, message.c_str());
}

void TestDeepSeekConfig::refusesMissingLatentNorm()
{
    const Model m = test::randomDeepSeekModel({}, 3);
    const auto dir = test::scratchDir("deepseek-missing-norm") / "out";
    ExportOptions e;
    e.folder = dir;
    exportModel(m, e);
    // Rewrite the weights without layer 1's kv_a_layernorm, and separately with a kv_b_proj of the wrong width.
    const auto file = dir / "model.safetensors";
    const SafetensorsCollection st = SafetensorsCollection::open(file);
    std::vector<std::pair<std::string, Tensor>> keptMatrices, wrong;
    for (const std::string& name : st.names()) {
        const Tensor t = st.tensor(name);
        const std::vector<float> values = t.toFloats();
        if (name != "model.layers.1.self_attn.kv_a_layernorm.weight")
            keptMatrices.emplace_back(name, Tensor::fromFloats(DType::F32, t.shape(), values.data()));
        std::vector<std::int64_t> shape = t.shape();
        if (name == "model.layers.0.self_attn.kv_b_proj.weight")
            shape[1] -= 1;
        std::vector<float> resized(static_cast<std::size_t>(shape[0] * (shape.size() > 1 ? shape[1] : 1)), 0.5f);
        wrong.emplace_back(name, Tensor::fromFloats(DType::F32, shape, resized.data()));
    }
    const auto missing = test::scratchDir("deepseek-missing-norm-2");
    std::filesystem::copy_file(dir / "config.json", missing / "config.json");
    writeSafetensors(missing / "model.safetensors", keptMatrices);
    const auto misshapen = test::scratchDir("deepseek-misshapen");
    std::filesystem::copy_file(dir / "config.json", misshapen / "config.json");
    writeSafetensors(misshapen / "model.safetensors", wrong);
    auto loadError = [](const std::filesystem::path& p) {
        try {
            loadModel(p);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    const std::string a = loadError(missing);
    QVERIFY2(a.find("missing tensor 'model.layers.1.self_attn.kv_a_layernorm.weight'") != std::string::npos, a.c_str());
    const std::string b = loadError(misshapen);
    QVERIFY2(b.find("'model.layers.0.self_attn.kv_b_proj.weight' has wrong shape") != std::string::npos, b.c_str());
}

QTEST_GUILESS_MAIN(TestDeepSeekConfig)
#include "tst_deepseek_config.moc"
