// `export [MODEL] --format gguf --out FILE.gguf [--dtype ...]`: the documented command that writes a model as one
// GGUF file for llama.cpp. Its JSON report; the written file runs in our own CLI with the source's greedy tokens;
// a file that is not a GGUF file this tool wrote is kept unless --force, the input never replaced; usage mistakes exit 2, bad input 1.
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json runJson(const std::vector<std::string>& args)
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
    void failures();
};

void TestCliExport::exportsAndRuns()
{
    const fs::path dir = test::scratchDir("export");
    const fs::path out = dir / "demo-q8.gguf";
    const json j = runJson({"export", "--format", "gguf", "--out", out.string(), "--dtype", "q8_0", "--name", "demo", "--json"});
    QCOMPARE(j["out"].get<std::string>(), out.string());
    QCOMPARE(j["architecture"].get<std::string>(), std::string("llama"));
    QCOMPARE(j["dtype"].get<std::string>(), std::string("q8_0"));
    QCOMPARE(j["tensors"].get<int>(), 47);
    QCOMPARE(j["kept_in_f16"].size(), std::size_t(5)); // ffn_down: rows of 172 weights
    QCOMPARE(j["bytes_written"].get<std::uint64_t>(), static_cast<std::uint64_t>(fs::file_size(out)));

    // An F32 export generates exactly what the source generates, through the same CLI.
    const fs::path f32 = dir / "demo.gguf";
    runJson({"export", "--out", f32.string(), "--json"});
    const json a = runJson({"generate", "--prompt", "Once upon a time", "--steps", "48", "--json"});
    const json b = runJson({"generate", f32.string(), "--prompt", "Once upon a time", "--steps", "48", "--json"});
    QCOMPARE(b["prompt_ids"], a["prompt_ids"]);
    QCOMPARE(b["ids"], a["ids"]);
    QCOMPARE(b["text"], a["text"]);
    const json info = runJson({"info", f32.string(), "--json"});
    QCOMPARE(info["format"].get<std::string>(), std::string("gguf"));
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
