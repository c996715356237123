// The analyze / convert / eval --reference contract of the CLI, end to end on the demo model.
#include "common/cli_json.h"
#include "common/test_support.h"

#include <QtTest>

#include <fstream>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;

namespace {

std::filesystem::path writeEvalIds(const std::filesystem::path& dir)
{
    std::string lines;
    for (int seed = 0; seed < 4; ++seed) {
        const json g = test::runCliJson({"generate", "--steps", "96", "--temperature", "1", "--top-p", "1", "--seed",
                                std::to_string(50 + seed), "--json"});
        lines += "1";
        for (int id : g["ids"].get<std::vector<int>>())
            lines += " " + std::to_string(id);
        lines += "\n";
    }
    const auto path = dir / "eval_ids.txt";
    test::writeTextFile(path, lines);
    return path;
}

} // namespace

class TestCliConversion : public QObject {
    Q_OBJECT
private slots:
    void analyzeJsonContract();
    void convertThenInfoGenerateEval();
    void fullRopeNoSvdMatchesTheOriginal();
    void conversionErrorsAreCleanExits();
    void randomizedDecompositionIsCheckedAndShown();
    void refitTokensAreChosenAndShown();
};

void TestCliConversion::analyzeJsonContract()
{
    const json a = test::runCliJson({"analyze", "--demo", "--calib-samples", "2", "--calib-seq-len", "32", "--rope-pairs", "1", "--json"});
    // stories260K: 5 layers, 8 heads, 4 KV heads, head 8 (4 pairs).
    QCOMPARE(a["rope_scores"].size(), std::size_t(5));
    QCOMPARE(a["rope_scores"][0].size(), std::size_t(4));
    QCOMPARE(a["rope_scores"][0][0].size(), std::size_t(4));
    QCOMPARE(a["rope_scores_q"][0].size(), std::size_t(8));
    QCOMPARE(a["kept_pairs"][0].size(), std::size_t(4));
    QCOMPARE(a["kept_pairs"][0][0].size(), std::size_t(1));
    for (const char* side : {"joint", "key", "value"}) {
        QCOMPARE(a["spectra"][side].size(), std::size_t(5));
        const auto s = a["spectra"][side][0].get<std::vector<double>>();
        QVERIFY(!s.empty());
        QVERIFY(std::is_sorted(s.rbegin(), s.rend()));
    }
    QCOMPARE(a["spectra"]["joint"][0].size(), std::size_t(4 * 6 + 32)); // [W_k_nope; W_v] is 56 x 64
    // The 2-norm selection keeps, per KV head, the pair with the largest score.
    for (std::size_t l = 0; l < 5; ++l) {
        for (std::size_t kv = 0; kv < 4; ++kv) {
            const auto scores = a["rope_scores"][l][kv].get<std::vector<double>>();
            const int best = static_cast<int>(std::max_element(scores.begin(), scores.end()) - scores.begin());
            QCOMPARE(a["kept_pairs"][l][kv][0].get<int>(), best);
        }
    }
    // Default latent for a 75% saving with one pair: 8, i.e. 80 elements per token against 320.
    QCOMPARE(a["kv_elements_per_token"].get<int>(), 80);
    QCOMPARE(a["kv_elements_per_token_original"].get<int>(), 320);
}

void TestCliConversion::convertThenInfoGenerateEval()
{
    const auto dir = test::scratchDir("cli-convert");
    const auto out = (dir / "mla").string();
    const json c = test::runCliJson({"convert", "--demo", "--out", out, "--rope-pairs", "1", "--latent-dim", "8", "--calib-samples",
                            "2", "--calib-seq-len", "32", "--json"});
    QCOMPARE(c["kv_elements_per_token"].get<int>(), 80);
    QCOMPARE(c["latent_dim"].get<int>(), 8);
    QCOMPARE(c["d_kv"].get<double>(), 2.0);

    const json info = test::runCliJson({"info", out, "--json"});
    QCOMPARE(info["attention"].get<std::string>(), std::string("mla"));
    QCOMPARE(info["kv_elements_per_token"].get<int>(), 80);

    const json g = test::runCliJson({"generate", out, "--steps", "40", "--json"});
    QCOMPARE(g["kv_bytes_per_token"].get<double>(), 80.0 * 4); // float32 latent + RoPE-key cache
    QVERIFY(!g["ids"].empty());
    const json gOriginal = test::runCliJson({"generate", "--steps", "40", "--json"});
    QCOMPARE(gOriginal["kv_bytes_per_token"].get<double>(), 320.0 * 4);

    const auto ids = writeEvalIds(dir).string();
    const json e = test::runCliJson({"eval", out, "--reference", (test::demoDir() / "stories260K.bin").string(), "--ids", ids, "--json"});
    for (const char* key : {"ppl", "tokens", "reference_ppl", "kl", "top1_agreement"})
        QVERIFY2(e.contains(key), key);
    QVERIFY(e["kl"].get<double>() > 0.0);
    QVERIFY(e["top1_agreement"].get<double>() >= 0.0 && e["top1_agreement"].get<double>() <= 1.0);
    QVERIFY(e["ppl"].get<double>() > e["reference_ppl"].get<double>());
}

void TestCliConversion::fullRopeNoSvdMatchesTheOriginal()
{
    const auto dir = test::scratchDir("cli-identity");
    const auto out = (dir / "mla").string();
    test::runCliJson({"convert", "--demo", "--out", out, "--rope-strategy", "high", "--rope-pairs", "4", "--svd", "none", "--json"});
    const auto ids = writeEvalIds(dir).string();
    const json e = test::runCliJson({"eval", out, "--reference", (test::demoDir() / "stories260K.bin").string(), "--ids", ids, "--json"});
    QVERIFY2(e["kl"].get<double>() < 1e-6, qPrintable(QString::number(e["kl"].get<double>())));
    QCOMPARE(e["top1_agreement"].get<double>(), 1.0);
    // Greedy text of the converted model is the published one.
    const json g = test::runCliJson({"generate", out, "--steps", "200", "--json"});
    const json o = test::runCliJson({"generate", "--steps", "200", "--json"});
    QCOMPARE(g["ids"], o["ids"]);
}

void TestCliConversion::conversionErrorsAreCleanExits()
{
    const auto dir = test::scratchDir("cli-convert-errors");
    auto r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--rope-pairs", "4", "--kv-saving", "0.9"});
    QCOMPARE(r.exitCode, 1);
    QVERIFY(r.err.find("not reachable") != std::string::npos);
    QVERIFY(!std::filesystem::exists(dir / "x"));
    r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--svd", "bogus"});
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"convert", "--demo"});
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"analyze", "--demo", "--calib-ids", (dir / "missing.txt").string()});
    QCOMPARE(r.exitCode, 1);
    QVERIFY(r.err.find("missing.txt") != std::string::npos);
    r = test::runCli({"convert", (dir / "mla-does-not-exist").string(), "--out", (dir / "y").string()});
    QCOMPARE(r.exitCode, 1);
}

void TestCliConversion::randomizedDecompositionIsCheckedAndShown()
{
    const auto dir = test::scratchDir("cli-randomized");
    const auto out = dir / "mla";
    const json c = test::runCliJson({"convert", "--demo", "--out", out.string(), "--rope-strategy", "high", "--rope-pairs", "1",
                                     "--latent-dim", "8", "--decomposition", "randomized", "--power-iterations", "0", "--json"});
    QCOMPARE(c["decomposition"].get<std::string>(), std::string("randomized"));
    const json& d = c["decomposition_check"];
    for (const char* key : {"layer", "power_iterations", "whitened", "exact_relative_error", "randomized_relative_error", "excess",
                            "exact_seconds", "randomized_seconds", "speedup"})
        QVERIFY2(d.contains(key), key);
    QCOMPARE(d["layer"].get<int>(), 0);
    QCOMPARE(d["power_iterations"].get<int>(), 0);
    QVERIFY(!d["whitened"].get<bool>());
    // No iteration on a 56 x 64 matrix: a visible excess over the best rank-8 factors, never below them.
    QVERIFY(d["exact_relative_error"].get<double>() > 0.0);
    QVERIFY2(d["excess"].get<double>() >= -1e-9, d.dump().c_str());
    std::ifstream card(out / "README.md");
    const std::string text((std::istreambuf_iterator<char>(card)), std::istreambuf_iterator<char>());
    QVERIFY2(text.find("checked on layer 0") != std::string::npos, "the model card does not show the check");

    // The default is exact and prints no check; --power-iterations alone and a bad method are usage errors.
    const json e = test::runCliJson({"convert", "--demo", "--out", (dir / "exact").string(), "--rope-strategy", "high", "--rope-pairs",
                                     "1", "--latent-dim", "8", "--json"});
    QCOMPARE(e["decomposition"].get<std::string>(), std::string("exact"));
    QVERIFY(!e.contains("decomposition_check"));
    auto r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--power-iterations", "2"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY2(r.err.find("--power-iterations applies to --decomposition randomized") != std::string::npos, r.err.c_str());
    r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--decomposition", "fast"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY2(r.err.find("exact or randomized") != std::string::npos, r.err.c_str());
    r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--decomposition", "randomized", "--power-iterations", "17"});
    QCOMPARE(r.exitCode, 2);
    r = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--decomposition", "randomized", "--target", "deepseek-v3"});
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.err.find("mha2mla target") != std::string::npos, r.err.c_str());
    QVERIFY(!std::filesystem::exists(dir / "x"));
}

// The best preset refits on half the calibration by default (this model's 64 features ask for 256 tokens at least),
// on all of it with --refit-tokens all, and says so in both outputs.
void TestCliConversion::refitTokensAreChosenAndShown()
{
    const auto dir = test::scratchDir("cli-refit-tokens");
    const std::vector<std::string> common{"--preset", "best", "--kv-saving", "0.75", "--calib-samples", "6", "--calib-seq-len", "128"};
    auto convert = [&](const std::string& name, std::vector<std::string> extra) {
        std::vector<std::string> args{"convert", "--demo", "--out", (dir / name).string(), "--json"};
        args.insert(args.end(), common.begin(), common.end());
        args.insert(args.end(), extra.begin(), extra.end());
        return test::runCliJson(args);
    };
    const json automatic = convert("auto", {});
    const json all = convert("all", {"--refit-tokens", "all"});
    const auto calibration = automatic["calibration"]["tokens"].get<std::int64_t>();
    QCOMPARE(all["calibration"]["tokens"].get<std::int64_t>(), calibration);
    const auto fitted = automatic["layers"][0]["fit_tokens"].get<std::int64_t>();
    QVERIFY2(fitted >= std::max<std::int64_t>((calibration + 1) / 2, 4 * 64) && fitted < calibration, automatic.dump().c_str());
    for (const json& layer : automatic["layers"])
        QCOMPARE(layer["fit_tokens"].get<std::int64_t>(), fitted);
    for (const json& layer : all["layers"])
        QCOMPARE(layer["fit_tokens"].get<std::int64_t>(), calibration);

    std::vector<std::string> text{"convert", "--demo", "--out", (dir / "text").string()};
    text.insert(text.end(), common.begin(), common.end());
    const test::ProcessResult r = test::runCli(text);
    QCOMPARE(r.exitCode, 0);
    const std::string line = "refitted layer by layer on " + std::to_string(fitted) + " of the " + std::to_string(calibration) + " calibration tokens";
    QVERIFY2(r.out.find(line) != std::string::npos, r.out.c_str());
    for (const char* bad : {"0", "-3", "some"}) {
        const test::ProcessResult b = test::runCli({"convert", "--demo", "--out", (dir / "x").string(), "--refit-tokens", bad});
        QCOMPARE(b.exitCode, 2);
        QVERIFY2(b.err.find("--refit-tokens") != std::string::npos, b.err.c_str());
    }
}

QTEST_APPLESS_MAIN(TestCliConversion)
#include "tst_cli_conversion.moc"
