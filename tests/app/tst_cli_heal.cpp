// The `convert --heal` contract (issue 13) end to end on the demo model (stories260K, 5 layers), with a small budget:
// per-layer held-out losses and model KL / PPL / top-1 before and after in --json, a line per layer on stderr, the
// model card recording the heal, `eval` on the healed export, the same seed giving the same bytes, and bad input
// refused before any work with nothing written.
#include "common/model_fixtures.h"
#include "common/sanitizer.h"
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path demoModel()
{
    return test::realModelPath("stories260K-hf");
}

// A small heal: 12 sequences of 64 tokens (2 held out), 8 steps per layer.
std::vector<std::string> healArgs(const fs::path& out)
{
    return {"convert", demoModel().string(), "--out", out.string(), "--preset", "paper", "--kv-saving", "0.75", "--heal",
            "--heal-steps", "8", "--heal-tokens", "768", "--heal-seq-len", "64", "--heal-seed", "3"};
}

std::string fileText(const fs::path& p)
{
    return test::readTextFile(p);
}

} // namespace

class TestCliHeal : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void healReportsPerLayerAndModel();
    void sameSeedSameBytes();
    void autoKeepsTheLowerHeldOutKl();
    void badInputIsRefusedBeforeAnyWork();

private:
    fs::path m_dir;
    json m_report;
};

void TestCliHeal::initTestCase()
{
    m_dir = test::scratchDir("cli_heal");
}

void TestCliHeal::healReportsPerLayerAndModel()
{
    const fs::path out = m_dir / "healed";
    auto args = healArgs(out);
    args.push_back("--json");
    const test::ProcessResult r = test::runCli(args);
    QVERIFY2(r.exitCode == 0 && !r.crashed, r.err.c_str());
    m_report = json::parse(r.out);
    const json& h = m_report["heal"];
    QCOMPARE(h["steps"].get<int>(), 8);
    QCOMPARE(h["seed"].get<int>(), 3);
    QCOMPARE(h["start"].get<std::string>(), std::string("paper"));
    QCOMPARE(h["layers_healed"].get<int>(), 5);
    QCOMPARE(h["layers"].size(), std::size_t(5));
    bool anyImproved = false;
    for (const json& l : h["layers"]) {
        const double before = l["held_out_loss_before"].get<double>(), after = l["held_out_loss_after"].get<double>();
        QVERIFY(std::isfinite(before) && before > 0.0);
        QVERIFY2(after <= before, qPrintable(QString::number(after) + " > " + QString::number(before)));
        anyImproved = anyImproved || after < before;
        QVERIFY(l["steps"].get<int>() >= 1 && l["steps"].get<int>() <= 8);
    }
    QVERIFY(anyImproved);
    for (const char* side : {"before", "after"}) {
        QVERIFY(h[side]["kl"].get<double>() >= 0.0);
        QVERIFY(h[side]["ppl"].get<double>() > 1.0);
        const double top1 = h[side]["top1"].get<double>();
        QVERIFY(top1 >= 0.0 && top1 <= 1.0);
    }
    QVERIFY2(h["after"]["kl"].get<double>() < h["before"]["kl"].get<double>(), r.out.c_str());
    QVERIFY(h["data"]["train_tokens"].get<int>() > 0 && h["data"]["held_out_tokens"].get<int>() > 0);
    // Progress: one line per layer on stderr.
    for (int l = 1; l <= 5; ++l)
        QVERIFY2(r.err.find("heal layer " + std::to_string(l) + "/5") != std::string::npos, r.err.c_str());

    // The model card records how it was healed.
    const std::string card = test::readTextFile(out / "README.md");
    QVERIFY(card.find("## Healing") != std::string::npos);
    QVERIFY(card.find("| steps per layer (`--heal-steps`) | 8 |") != std::string::npos);
    QVERIFY(card.find("| seed (`--heal-seed`) | 3 |") != std::string::npos);
    QVERIFY(card.find("sampled") != std::string::npos || card.find("samples") != std::string::npos);
    QVERIFY(card.find("before,") != std::string::npos);

    // eval works on the healed export, and its KL against the original is finite.
    std::string lines;
    for (int seed = 0; seed < 2; ++seed) {
        const test::ProcessResult g = test::runCli({"generate", demoModel().string(), "--steps", "48", "--temperature", "1", "--top-p", "1",
                                                    "--seed", std::to_string(70 + seed), "--json"});
        QCOMPARE(g.exitCode, 0);
        lines += "1";
        for (int id : json::parse(g.out)["ids"].get<std::vector<int>>())
            lines += " " + std::to_string(id);
        lines += "\n";
    }
    test::writeTextFile(m_dir / "eval_ids.txt", lines);
    const test::ProcessResult e = test::runCli({"eval", out.string(), "--ids", (m_dir / "eval_ids.txt").string(), "--reference",
                                                demoModel().string(), "--json"});
    QVERIFY2(e.exitCode == 0, e.err.c_str());
    const json ev = json::parse(e.out);
    QVERIFY2(ev.dump().find("kl") != std::string::npos, e.out.c_str());
}

void TestCliHeal::sameSeedSameBytes()
{
    QVERIFY2(!m_report.is_null(), "the first heal of this test failed; nothing to compare with");
    const fs::path again = m_dir / "again";
    const test::ProcessResult r = test::runCli(healArgs(again));
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    QVERIFY(fileText(again / "model.safetensors") == fileText(m_dir / "healed" / "model.safetensors"));
}

// --heal-start auto on a `best` conversion heals the paper split and the allocated one and writes the one with the
// lower held-out KL; the JSON and config.json describe the start written. --heal-start paper writes the paper split.
void TestCliHeal::autoKeepsTheLowerHeldOutKl()
{
#ifdef MLA_ADDRESS_SANITIZER
    QSKIP("three `best` conversions and three heals: about 30 s of CPU in Release, minutes under ASan; run in the Release tree");
#endif
    for (const std::string start : {"auto", "paper"}) {
        const fs::path out = m_dir / ("start-" + start);
        const test::ProcessResult r = test::runCli({"convert", demoModel().string(), "--out", out.string(), "--preset", "best",
                                                    "--kv-saving", "0.75", "--calib-samples", "2", "--calib-seq-len", "32", "--heal",
                                                    "--heal-steps", "4", "--heal-tokens", "384", "--heal-seq-len", "32",
                                                    "--heal-start", start, "--json", "--quiet"});
        QVERIFY2(r.exitCode == 0 && !r.crashed, r.err.c_str());
        const json j = json::parse(r.out);
        const json& h = j["heal"];
        std::string written = h["start"].get<std::string>();
        if (start == "auto") {
            const json& starts = h["auto"]["starts"];
            QCOMPARE(starts.size(), std::size_t(2));
            QCOMPARE(starts[0]["name"].get<std::string>(), std::string("paper"));
            QCOMPARE(starts[1]["name"].get<std::string>(), std::string("allocated"));
            const double paperKl = starts[0]["held_out_kl_healed"].get<double>(), allocatedKl = starts[1]["held_out_kl_healed"].get<double>();
            QCOMPARE(written, std::string(allocatedKl < paperKl ? "allocated" : "paper"));
            QCOMPARE(h["after"]["kl"].get<double>(), std::min(paperKl, allocatedKl));
        } else {
            QCOMPARE(written, std::string("paper"));
            QVERIFY(!h.contains("auto"));
        }
        const std::string preset = written == "paper" ? "paper" : "best";
        QCOMPARE(j["preset"].get<std::string>(), preset);
        QCOMPARE(j.contains("allocation"), preset == "best");
        const json config = json::parse(test::readTextFile(out / "config.json"));
        QCOMPARE(config["mha2mla"]["preset"].get<std::string>(), preset);
        QVERIFY(test::readTextFile(out / "README.md").find("| start | " + written) != std::string::npos);
    }
}

void TestCliHeal::badInputIsRefusedBeforeAnyWork()
{
    const fs::path empty = m_dir / "empty_ids.txt";
    test::writeTextFile(empty, "");
    const fs::path outOfVocab = m_dir / "oov_ids.txt";
    test::writeTextFile(outOfVocab, "1 5 9 12 40 7 3 2\n1 4 99999 3 2 8 9 10\n1 2 3 4 5 6 7 8\n");
    struct Case {
        std::vector<std::string> extra;
        int exitCode;
        std::string message;
    };
    const std::vector<Case> cases = {
        {{"--heal-steps", "0"}, 2, "--heal-steps"},
        {{"--heal-lr", "nan"}, 2, "--heal-lr"},
        {{"--heal-lr", "0"}, 2, "--heal-lr"},
        {{"--heal-ids", empty.string()}, 1, empty.filename().string()},
        {{"--heal-ids", outOfVocab.string()}, 1, "99999"},
    };
    for (const Case& c : cases) {
        const fs::path out = m_dir / "refused";
        std::vector<std::string> args = {"convert", demoModel().string(), "--out", out.string(), "--preset", "paper", "--heal"};
        args.insert(args.end(), c.extra.begin(), c.extra.end());
        const test::ProcessResult r = test::runCli(args);
        QVERIFY2(r.exitCode == c.exitCode && !r.crashed, qPrintable(QString::number(r.exitCode) + ": " + QString::fromStdString(r.err)));
        QVERIFY2(r.err.find(c.message) != std::string::npos, r.err.c_str());
        QVERIFY(!fs::exists(out));
    }
    // A --heal-* flag without --heal is a usage error, not silently ignored.
    const test::ProcessResult r = test::runCli({"convert", demoModel().string(), "--out", (m_dir / "refused").string(), "--heal-steps", "5"});
    QCOMPARE(r.exitCode, 2);
    QVERIFY(r.err.find("--heal") != std::string::npos);
    QVERIFY(!fs::exists(m_dir / "refused"));
}

QTEST_GUILESS_MAIN(TestCliHeal)
#include "tst_cli_heal.moc"
