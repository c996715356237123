// --kv-cache / --kv-cache-rope / --kv-cache-group on generate, eval and convert --check (issue 16): the bytes per token
// the JSON reports (kv_bytes_per_token) are the hand count of what the cache allocates, scales included, and the
// options are refused with a usage error where they are wrong or mean nothing.
#include "common/cli_json.h"
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;

namespace {

// stories260K (the demo): 5 layers, 4 KV heads of 8 dims, so 32 keys and 32 values per layer and token. Converted
// with one RoPE pair per head and a latent of 8: 8 RoPE-key elements and 8 latent elements per layer. Quantised rows
// hold one group (64 > the row) with its F16 scale and F16 minimum (4 bytes).
constexpr double kGroupParams = 4;

} // namespace

class TestCliKvCache : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void generateReportsTheAllocatedBytes();
    void ropePartIsSeparate();
    void evalMeasuresTheQuantisedCache();
    void convertCheckReportsBothCaches();
    void badOptionsAreUsageErrors();

private:
    std::filesystem::path m_dir;
    std::string m_converted;
};

void TestCliKvCache::initTestCase()
{
    m_dir = test::scratchDir("cli-kv-cache");
    m_converted = (m_dir / "mla").string();
    test::runCliJson({"convert", "--demo", "--out", m_converted, "--rope-pairs", "1", "--latent-dim", "8", "--calib-samples", "2",
             "--calib-seq-len", "32", "--json"});
}

void TestCliKvCache::generateReportsTheAllocatedBytes()
{
    const std::vector<std::pair<std::string, double>> original = {
        {"f32", 5 * 2 * 32 * 4.0}, {"bf16", 5 * 2 * 32 * 2.0}, {"int8", 5 * 2 * (32 + kGroupParams)}, {"int4", 5 * 2 * (16 + kGroupParams)}};
    for (const auto& [format, bytes] : original) {
        const json g = test::runCliJson({"generate", "--demo", "--steps", "12", "--kv-cache", format, "--json"});
        QCOMPARE(g["kv_bytes_per_token"].get<double>(), bytes);
        QVERIFY(g["kv_cache"].get<std::string>().starts_with(format));
        QCOMPARE(g["ids"].size(), std::size_t(12));
    }
    // int4 groups of 8: four groups per 32-element row.
    const json g = test::runCliJson({"generate", "--demo", "--steps", "12", "--kv-cache", "int4", "--kv-cache-group", "8", "--json"});
    QCOMPARE(g["kv_bytes_per_token"].get<double>(), 5 * 2 * (16 + 4 * kGroupParams));
    QCOMPARE(g["kv_cache"].get<std::string>(), std::string("int4/8+rope:int8/8"));
    // Without --kv-cache: float32, the results of before.
    const json plain = test::runCliJson({"generate", "--demo", "--steps", "12", "--json"});
    const json f32 = test::runCliJson({"generate", "--demo", "--steps", "12", "--kv-cache", "f32", "--json"});
    QCOMPARE(plain["ids"], f32["ids"]);
    QCOMPARE(plain["kv_cache"].get<std::string>(), std::string("f32"));
}

void TestCliKvCache::ropePartIsSeparate()
{
    // int4 latent; RoPE keys by default in int8 (docs/kv-cache.md), or as asked.
    const json byDefault = test::runCliJson({"generate", m_converted, "--steps", "12", "--kv-cache", "int4", "--json"});
    QCOMPARE(byDefault["kv_bytes_per_token"].get<double>(), 5 * ((4 + kGroupParams) + (8 + kGroupParams)));
    const json bf16Rope = test::runCliJson({"generate", m_converted, "--steps", "12", "--kv-cache", "int4", "--kv-cache-rope", "bf16", "--json"});
    QCOMPARE(bf16Rope["kv_bytes_per_token"].get<double>(), 5 * ((4 + kGroupParams) + 8 * 2.0));
    QCOMPARE(bf16Rope["kv_cache"].get<std::string>(), std::string("int4/64+rope:bf16"));
    const json f32 = test::runCliJson({"generate", m_converted, "--steps", "12", "--json"});
    QCOMPARE(f32["kv_bytes_per_token"].get<double>(), 5 * 16 * 4.0);
}

void TestCliKvCache::evalMeasuresTheQuantisedCache()
{
    const json g = test::runCliJson({"generate", "--demo", "--steps", "64", "--temperature", "1", "--top-p", "1", "--seed", "5", "--json"});
    std::string line;
    for (int id : g["ids"].get<std::vector<int>>())
        line += (line.empty() ? "" : " ") + std::to_string(id);
    const auto ids = m_dir / "ids.txt";
    test::writeTextFile(ids, line + "\n");
    const std::string reference = (test::demoDir() / "stories260K.bin").string();
    const json f32 = test::runCliJson({"eval", m_converted, "--reference", reference, "--ids", ids.string(), "--json"});
    const json int4 = test::runCliJson({"eval", m_converted, "--reference", reference, "--ids", ids.string(), "--kv-cache", "int4", "--json"});
    QCOMPARE(f32["kv_bytes_per_token"].get<double>(), 5 * 16 * 4.0);
    QCOMPARE(int4["kv_bytes_per_token"].get<double>(), 5 * ((4 + kGroupParams) + (8 + kGroupParams)));
    QCOMPARE(int4["reference_kv_bytes_per_token"].get<double>(), 5 * 2 * 32 * 4.0); // the reference stays float32
    QCOMPARE(int4["reference_ppl"].get<double>(), f32["reference_ppl"].get<double>());
    // The quantised cache is really what the model read: its KL to the reference differs from the float32 one.
    QVERIFY(int4["kl"].get<double>() != f32["kl"].get<double>());
    const json alone = test::runCliJson({"eval", m_converted, "--ids", ids.string(), "--kv-cache", "int8", "--json"});
    QCOMPARE(alone["kv_bytes_per_token"].get<double>(), 5 * ((8 + kGroupParams) + (8 + kGroupParams)));
    QCOMPARE(alone["kv_cache"].get<std::string>(), std::string("int8/64"));
}

void TestCliKvCache::convertCheckReportsBothCaches()
{
    const json c = test::runCliJson({"convert", "--demo", "--out", (m_dir / "checked").string(), "--rope-pairs", "1", "--latent-dim", "8",
                            "--calib-samples", "2", "--calib-seq-len", "32", "--check", "--kv-cache", "int4", "--json"});
    const json& check = c["check"];
    QCOMPARE(check["kv_cache"].get<std::string>(), std::string("int4/64+rope:int8/64"));
    const json& q = check["kv_cache_quality"];
    QCOMPARE(q["kv_bytes_per_token"].get<double>(), 5 * ((4 + kGroupParams) + (8 + kGroupParams)));
    QCOMPARE(check["original_bf16_kv_bytes_per_token"].get<double>(), 5 * 2 * 32 * 2.0);
    QCOMPARE(check["combined_kv_saving"].get<double>(), 1.0 - 100.0 / 640.0);
    // The float32 figures stay those of the float32 cache; the int4 ones are measured on their own.
    QCOMPARE(check["converted_kv_bytes_per_token"].get<double>(), 5 * 16 * 4.0);
    QVERIFY(q["kl"].get<double>() != check["kl"].get<double>());
    QVERIFY(q["ppl"].get<double>() > 1.0);
    QVERIFY(q["top1_agreement"].get<double>() > 0.0 && q["top1_agreement"].get<double>() <= 1.0);
    // The model card carries both, and the accounting of the quantised formats.
    const std::string card = test::readTextFile(m_dir / "checked" / "README.md");
    QVERIFY(card.find("With the converted model's KV cache stored as int4/64+rope:int8/64") != std::string::npos);
    QVERIFY(card.find("| bytes per token, int4/64+rope:int8/64 cache (`--kv-cache int4`) | 200 | 100 |") != std::string::npos);
    QVERIFY(card.find("**84.4% saved** with the converted model's int4/64+rope:int8/64 cache") != std::string::npos);
}

void TestCliKvCache::badOptionsAreUsageErrors()
{
    auto r = test::runCli({"generate", "--demo", "--kv-cache", "int3"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY(r.err.find("int3") != std::string::npos);
    r = test::runCli({"generate", "--demo", "--kv-cache", "bf16/32"}); // a float type has no groups
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"eval", "--demo", "--ids", "x.txt", "--kv-cache-rope", "fp8"});
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"generate", "--demo", "--kv-cache", "int8", "--kv-cache-group", "0"});
    QCOMPARE(r.exitCode, 2);
    // Without --check there is nothing for the cache format to apply to, and nothing is written.
    r = test::runCli({"convert", "--demo", "--out", (m_dir / "unchecked").string(), "--kv-cache", "int8"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY(r.err.find("--check") != std::string::npos);
    QVERIFY(!std::filesystem::exists(m_dir / "unchecked"));
}

QTEST_APPLESS_MAIN(TestCliKvCache)
#include "tst_cli_kv_cache.moc"
