// The CLI contract of the deepseek-v3 target: convert --target deepseek-v3 [--flashmla], what it writes (config.json,
// explicit lm_head.weight, model card with the serving commands), info on the result, and clean refusals.
#include "common/test_support.h"
#include "formats/safetensors.h"

#include <QtTest>
#include <nlohmann/json.hpp>

#include <algorithm>

using namespace mla;
using nlohmann::json;

class TestCliDeepSeek : public QObject {
    Q_OBJECT
private slots:
    void convertWritesTheDeepSeekLayout();
    void refusalsAreCleanExits();
};

void TestCliDeepSeek::convertWritesTheDeepSeekLayout()
{
    const auto dir = test::scratchDir("cli-deepseek") / "out";
    const test::ProcessResult r = test::runCli({"convert", "--demo", "--out", dir.string(), "--target", "deepseek-v3",
                                                "--calib-samples", "2", "--calib-seq-len", "32", "--check", "--quiet", "--json"});
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    const json j = json::parse(r.out);
    QCOMPARE(j["target"].get<std::string>(), std::string("deepseek-v3"));
    QCOMPARE(j["attention"].get<std::string>(), std::string("mla"));
    QCOMPARE(j["kv_elements_per_token"].get<int>(), 80); // stories260K: 320 -> 75% saved
    QCOMPARE(j["kv_lora_rank"].get<int>() + j["qk_rope_head_dim"].get<int>(), 16);
    QCOMPARE(j["layers"].size(), std::size_t(5));
    QVERIFY(j["check"]["kl"].get<double>() > 0.0);

    const json config = json::parse(test::readTextFile(dir / "config.json"));
    QCOMPARE(config["model_type"].get<std::string>(), std::string("deepseek_v3"));
    QCOMPARE(config["architectures"][0].get<std::string>(), std::string("DeepseekV3ForCausalLM"));
    QVERIFY(config["q_lora_rank"].is_null());
    QCOMPARE(config["first_k_dense_replace"].get<int>(), 5);
    QVERIFY(!config.contains("head_dim"));
    const auto names = SafetensorsCollection::open(dir).names();
    QVERIFY(std::find(names.begin(), names.end(), "lm_head.weight") != names.end());
    QVERIFY(std::find(names.begin(), names.end(), "model.layers.0.self_attn.kv_a_proj_with_mqa.weight") != names.end());
    QVERIFY(std::find(names.begin(), names.end(), "model.layers.0.self_attn.k_proj.weight") == names.end());

    const std::string card = test::readTextFile(dir / "README.md");
    for (const char* needle : {"AutoModelForCausalLM.from_pretrained", "vllm serve", "VLLM_MLA_DISABLE=1",
                               "python -m sglang.launch_server --model-path", "## Measured quality", "kv_lora_rank"})
        QVERIFY2(card.find(needle) != std::string::npos, needle);

    const test::ProcessResult info = test::runCli({"info", dir.string(), "--json"});
    QVERIFY2(info.exitCode == 0, info.err.c_str());
    const json i = json::parse(info.out);
    QCOMPARE(i["attention"].get<std::string>(), std::string("mla"));
    QCOMPARE(i["architecture"].get<std::string>(), std::string("deepseek_v3"));
    QCOMPARE(i["kv_elements_per_token"].get<int>(), 80);

    // The output policy of every export: an earlier export is replaced only with --force.
    const std::vector<std::string> again{"convert", "--demo", "--out", dir.string(), "--target", "deepseek-v3",
                                         "--calib-samples", "2", "--calib-seq-len", "16", "--quiet"};
    const test::ProcessResult refused = test::runCli(again);
    QCOMPARE(refused.exitCode, 1);
    QVERIFY2(refused.err.find("--force") != std::string::npos, refused.err.c_str());
    std::vector<std::string> forced = again;
    forced.push_back("--force");
    const test::ProcessResult replaced = test::runCli(forced);
    QVERIFY2(replaced.exitCode == 0, replaced.err.c_str());
    QVERIFY(std::filesystem::exists(dir / "model.safetensors"));
}

void TestCliDeepSeek::refusalsAreCleanExits()
{
    const auto dir = test::scratchDir("cli-deepseek-refused");
    const auto out = dir / "out";
    test::ProcessResult r = test::runCli({"convert", "--demo", "--out", out.string(), "--target", "deepseek-v3", "--flashmla"});
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.err.find("too small for FlashMLA") != std::string::npos, r.err.c_str());
    QVERIFY(!std::filesystem::exists(out));
    r = test::runCli({"convert", "--demo", "--out", out.string(), "--flashmla"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY(r.err.find("--flashmla applies to --target deepseek-v3") != std::string::npos);
    r = test::runCli({"convert", "--demo", "--out", out.string(), "--target", "deepseek-v4"});
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"convert", "--demo", "--out", out.string(), "--target", "deepseek-v3", "--heal"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY2(r.err.find("mha2mla layout only") != std::string::npos, r.err.c_str());
    r = test::runCli({"convert", "--demo", "--out", out.string(), "--target", "deepseek-v3", "--svd", "split"});
    QCOMPARE(r.exitCode, 1);
    QVERIFY(r.err.find("joint") != std::string::npos);
    QVERIFY(!std::filesystem::exists(out));
}

QTEST_GUILESS_MAIN(TestCliDeepSeek)
#include "tst_cli_deepseek.moc"
