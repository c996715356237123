// `analyze --session FILE.h5` and `session FILE.h5 [--json]`: the session command prints the analyze --json keys of the
// run that wrote the file, identically, from a fresh process and without the model.
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

using namespace mla;
using nlohmann::json;

class TestCliSession : public QObject {
    Q_OBJECT
private slots:
    void sessionJsonRepeatsAnalyzeJson_data();
    void sessionJsonRepeatsAnalyzeJson();
    void textSummary();
    void failuresAreCleanExits();
};

void TestCliSession::sessionJsonRepeatsAnalyzeJson_data()
{
    QTest::addColumn<QStringList>("options");
    QTest::newRow("demo, 2-norm, 1 pair") << QStringList{"--demo", "--rope-pairs", "1"};
    QTest::newRow("demo, uniform, split") << QStringList{"--demo", "--rope-strategy", "uniform", "--rope-pairs", "2",
                                                         "--uniform-start", "1", "--svd", "split", "--latent-dim", "24"};
    QTest::newRow("xs260K, rotation-loss") << QStringList{QString::fromStdString((test::modelsDir() / "xs260K" / "xs260K.bin").string()),
                                                          "--rope-strategy", "rotation-loss", "--kv-saving", "0.5"};
}

void TestCliSession::sessionJsonRepeatsAnalyzeJson()
{
    QFETCH(QStringList, options);
    static int run = 0;
    const auto dir = test::scratchDir("cli-session-" + std::to_string(run++));
    const auto file = dir / "run.h5";
    std::vector<std::string> args{"analyze", "--calib-samples", "2", "--calib-seq-len", "32", "--json", "--session", file.string()};
    for (const auto& o : options)
        args.push_back(o.toStdString());
    const test::ProcessResult analyze = test::runCli(args);
    QVERIFY2(analyze.exitCode == 0 && !analyze.crashed, analyze.err.c_str());
    QVERIFY(std::filesystem::exists(file));
    const json a = json::parse(analyze.out);

    const test::ProcessResult session = test::runCli({"session", file.string(), "--json"});
    QVERIFY2(session.exitCode == 0 && !session.crashed, session.err.c_str());
    const json s = json::parse(session.out);
    for (const char* key : {"rope_scores", "rope_scores_q", "kept_pairs", "spectra", "error_curves", "kv_elements_per_token"})
        QVERIFY2(a.contains(key), key);
    for (auto it = a.begin(); it != a.end(); ++it) {
        QVERIFY2(s.contains(it.key()), it.key().c_str());
        QVERIFY2(s[it.key()] == it.value(), it.key().c_str());
    }
    QCOMPARE(s["session"]["schema_version"].get<int>(), 6); // docs/session-format.md
    QCOMPARE(s["session"]["format"].get<std::string>(), std::string("mla-workbench-session"));
    QCOMPARE(s["settings"]["rope_strategy"], a["rope_strategy"]);

    // Only the session file is left in the folder: no temporary.
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        entries += e.path() == file ? 1 : 100;
    QCOMPARE(entries, 1);
}

void TestCliSession::textSummary()
{
    const auto dir = test::scratchDir("cli-session-text");
    const auto file = dir / "demo.h5";
    const test::ProcessResult analyze = test::runCli({"analyze", "--demo", "--calib-samples", "2", "--calib-seq-len", "24",
                                                      "--session", file.string()});
    QVERIFY2(analyze.exitCode == 0, analyze.err.c_str());
    QVERIFY2(analyze.err.find("session saved to " + file.string()) != std::string::npos, analyze.err.c_str());
    const test::ProcessResult r = test::runCli({"session", file.string()});
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    for (const char* line : {"session ", "model ", "stories260K", "calibration ", "KV per token    320 -> 80 elements (75.0% saved)",
                             "settings "})
        QVERIFY2(r.out.find(line) != std::string::npos, qPrintable(QString::fromStdString(r.out)));
    const test::ProcessResult help = test::runCli({"--help"});
    QVERIFY(help.out.find("  session") != std::string::npos);
}

void TestCliSession::failuresAreCleanExits()
{
    const auto dir = test::scratchDir("cli-session-failures");
    // A save into a folder that does not exist: exit 1 naming the file, nothing printed, nothing left.
    const auto missing = dir / "no-such-folder" / "run.h5";
    const test::ProcessResult save = test::runCli({"analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "16", "--json",
                                                   "--session", missing.string()});
    QCOMPARE(save.exitCode, 1);
    QVERIFY(!save.crashed);
    QVERIFY2(save.err.find(missing.string()) != std::string::npos, save.err.c_str());
    QVERIFY(save.out.empty());
    QVERIFY(!std::filesystem::exists(missing.parent_path()));

    const test::ProcessResult noFile = test::runCli({"session"});
    QCOMPARE(noFile.exitCode, 2);
    const test::ProcessResult notSession = test::runCli({"session", (test::modelsDir() / "xs260K" / "xs260K.bin").string(), "--json"});
    QCOMPARE(notSession.exitCode, 1);
    QVERIFY2(notSession.err.find("xs260K.bin: not an HDF5 file") != std::string::npos, notSession.err.c_str());
}

QTEST_APPLESS_MAIN(TestCliSession)
#include "tst_cli_session.moc"
