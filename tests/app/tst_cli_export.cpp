// `export [MODEL] --format gguf --out FILE.gguf [--dtype ...]`: the documented command that writes a model as one
// GGUF file for llama.cpp, and `convert --target deepseek-v3 --format gguf` for a converted one. Its JSON report; the written file runs in our own CLI with the source's greedy tokens;
// a file that is not a GGUF file this tool wrote is kept unless --force, the input never replaced; usage mistakes exit 2, bad input 1.
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json exportJson(const std::vector<std::string>& args)
{
    const test::ProcessResult r = test::runCli(args);
    if (r.exitCode != 0 || r.crashed)
        throw std::runtime_error("mla-workbench-cli failed: " + r.err);
    return json::parse(r.out);
}

} // namespace

class TestCliExport : public QObject {
    Q_OBJECT
private slots:
    void exportsAndRuns();
    void convertsToDeepSeek2();
    void failures();
};

void TestCliExport::exportsAndRuns()
{
    const fs::path dir = test::scratchDir("export");
    const fs::path out = dir / "demo-q8.gguf";
    const json j = exportJson({"export", "--format", "gguf", "--out", out.string(), "--dtype", "q8_0", "--name", "demo", "--json"});
    QCOMPARE(j["out"].get<std::string>(), out.string());
    QCOMPARE(j["architecture"].get<std::string>(), std::string("llama"));
    QCOMPARE(j["dtype"].get<std::string>(), std::string("q8_0"));
    QCOMPARE(j["tensors"].get<int>(), 47);
    QCOMPARE(j["kept_in_f16"].size(), std::size_t(5)); // ffn_down: rows of 172 weights
    QCOMPARE(j["bytes_written"].get<std::uint64_t>(), static_cast<std::uint64_t>(fs::file_size(out)));

    // An F32 export generates exactly what the source generates, through the same CLI.
    const fs::path f32 = dir / "demo.gguf";
    exportJson({"export", "--out", f32.string(), "--json"});
    const json a = exportJson({"generate", "--prompt", "Once upon a time", "--steps", "48", "--json"});
    const json b = exportJson({"generate", f32.string(), "--prompt", "Once upon a time", "--steps", "48", "--json"});
    QCOMPARE(b["prompt_ids"], a["prompt_ids"]);
    QCOMPARE(b["ids"], a["ids"]);
    QCOMPARE(b["text"], a["text"]);
    const json info = exportJson({"info", f32.string(), "--json"});
    QCOMPARE(info["format"].get<std::string>(), std::string("gguf"));
}

// `convert --target deepseek-v3 --format gguf`: the converted model as llama.cpp's deepseek2 in one step, with the
// check's numbers in the file; the same conversion written as a folder and exported gives a file that generates the
// same tokens.
void TestCliExport::convertsToDeepSeek2()
{
    const fs::path dir = test::scratchDir("deepseek2");
    const std::vector<std::string> calibration = {"--calib-samples", "2", "--calib-seq-len", "64"};
    auto with = [&](std::vector<std::string> args) {
        args.insert(args.end(), calibration.begin(), calibration.end());
        return args;
    };
    const fs::path direct = dir / "direct.gguf";
    const json j = exportJson(with({"convert", "--target", "deepseek-v3", "--format", "gguf", "--out", direct.string(), "--check", "--json"}));
    QCOMPARE(j["architecture"].get<std::string>(), std::string("deepseek2"));
    QCOMPARE(j["format"].get<std::string>(), std::string("gguf"));
    QCOMPARE(j["target"].get<std::string>(), std::string("deepseek-v3"));
    QCOMPARE(j["kv_values_per_token"].get<int>(), 80); // stories260K: 320 values per token, 75% saved
    QCOMPARE(j["kv_saving"].get<double>(), 0.75);
    QCOMPARE(j["bytes_written"].get<std::uint64_t>(), static_cast<std::uint64_t>(fs::file_size(direct)));
    QVERIFY(j["check"]["kl"].get<double>() > 0.0);
    const std::string card = j["model_card"].get<std::string>();
    QVERIFY2(card.find("## Quality against the source") != std::string::npos, card.c_str());
    QVERIFY2(card.find("llama-cli -m direct.gguf") != std::string::npos, card.c_str());

    const fs::path folder = dir / "folder";
    exportJson(with({"convert", "--target", "deepseek-v3", "--out", folder.string(), "--dtype", "f32", "--json"}));
    const fs::path exported = dir / "exported.gguf";
    const json e = exportJson({"export", folder.string(), "--format", "gguf", "--out", exported.string(), "--tokenizer",
                            (test::demoDir() / "tok512.bin").string(), "--json"});
    QCOMPARE(e["architecture"].get<std::string>(), std::string("deepseek2"));
    QCOMPARE(e["tensors"], j["tensors"]);
    const json a = exportJson({"generate", direct.string(), "--prompt", "Once upon a time", "--steps", "32", "--json"});
    const json b = exportJson({"generate", exported.string(), "--prompt", "Once upon a time", "--steps", "32", "--json"});
    QCOMPARE(b["ids"], a["ids"]);
    QCOMPARE(a["kv_elements_per_token"].get<int>(), 80);

    // Usage mistakes, refused before any work (exit 2) and without a file.
    const fs::path none = dir / "none.gguf";
    QCOMPARE(test::runCli({"convert", "--format", "gguf", "--out", none.string()}).exitCode, 2); // no deepseek-v3 target
    QCOMPARE(test::runCli({"convert", "--target", "deepseek-v3", "--format", "onnx", "--out", none.string()}).exitCode, 2);
    QCOMPARE(test::runCli({"convert", "--target", "deepseek-v3", "--format", "gguf", "--heal", "--out", none.string()}).exitCode, 2);
    QCOMPARE(test::runCli({"convert", "--target", "deepseek-v3", "--format", "gguf", "--shard-mb", "4", "--out", none.string()}).exitCode, 2);
    QCOMPARE(test::runCli({"convert", "--target", "deepseek-v3", "--format", "gguf", "--dtype", "q4_k", "--out", none.string()}).exitCode, 2);
    QVERIFY(!fs::exists(none));
}

void TestCliExport::failures()
{
    const fs::path dir = test::scratchDir("failures");
    const fs::path out = dir / "x.gguf";
    test::writeTextFile(out, "keep me");
    auto r = test::runCli({"export", "--out", out.string()});
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.err.find("exists and is not a GGUF file written by MLA Workbench; replaced only when forced (--force)") != std::string::npos, r.err.c_str());
    QCOMPARE(test::readTextFile(out), std::string("keep me"));
    QCOMPARE(test::runCli({"export", "--out", out.string(), "--force", "--json"}).exitCode, 0);
    r = test::runCli({"export", out.string(), "--out", out.string(), "--force"});
    QCOMPARE(r.exitCode, 1);
    QVERIFY2(r.err.find("is an input of this job") != std::string::npos, r.err.c_str());
    QCOMPARE(test::runCli({"export", "--out", (dir / "y.gguf").string(), "--dtype", "q4_k"}).exitCode, 2);
    QCOMPARE(test::runCli({"export", "--out", (dir / "y.gguf").string(), "--format", "safetensors"}).exitCode, 2);
    QCOMPARE(test::runCli({"export"}).exitCode, 2);
    QVERIFY(!fs::exists(dir / "y.gguf"));
}

QTEST_GUILESS_MAIN(TestCliExport)
#include "tst_cli_export.moc"
