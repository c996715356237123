// A session is readable with h5py and no code of ours (Debian's /usr/bin/python3 with python3-h5py), and what it reads
// equals `analyze --json` bit for bit (tests/tools/check_session_h5py.py).
#include "common/test_support.h"

#include <QProcess>
#include <QtTest>

using namespace mla;

namespace {

// /usr/bin/python3 explicitly: a python3 earlier on PATH may be another installation without h5py.
constexpr const char* kPython = "/usr/bin/python3";

struct PythonRun {
    int exitCode = -1;
    std::string output;
};

PythonRun runPython(const QStringList& args)
{
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(kPython, args);
    PythonRun r;
    if (!p.waitForStarted(10000) || !p.waitForFinished(120000))
        return r;
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.output = p.readAll().toStdString();
    return r;
}

} // namespace

class TestSessionH5py : public QObject {
    Q_OBJECT
private slots:
    void h5pyReadsTheScoresOfAnalyze_data();
    void h5pyReadsTheScoresOfAnalyze();
};

void TestSessionH5py::h5pyReadsTheScoresOfAnalyze_data()
{
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("strategy");
    QTest::newRow("demo 2-norm") << QString() << QStringLiteral("2-norm");
    QTest::newRow("aidreams-hf rotation-loss") << QString::fromStdString((test::modelsDir() / "aidreams260K-hf").string())
                                               << QStringLiteral("rotation-loss");
}

void TestSessionH5py::h5pyReadsTheScoresOfAnalyze()
{
    QFETCH(QString, model);
    QFETCH(QString, strategy);
    if (!std::filesystem::exists(kPython))
        QSKIP("no /usr/bin/python3 (Debian's python3 with python3-h5py is needed for this test)");
    if (runPython({"-c", "import h5py, numpy"}).exitCode != 0)
        QSKIP("/usr/bin/python3 has no h5py/numpy (install python3-h5py)");

    const auto dir = test::scratchDir("session-h5py-" + strategy.toStdString());
    const auto session = dir / "run.h5";
    std::vector<std::string> args{"analyze"};
    if (!model.isEmpty())
        args.push_back(model.toStdString());
    for (const char* a : {"--calib-samples", "2", "--calib-seq-len", "40", "--json", "--session"})
        args.push_back(a);
    args.push_back(session.string());
    args.push_back("--rope-strategy");
    args.push_back(strategy.toStdString());
    const test::ProcessResult analyze = test::runCli(args);
    QVERIFY2(analyze.exitCode == 0 && !analyze.crashed, analyze.err.c_str());
    const auto json = dir / "analyze.json";
    test::writeTextFile(json, analyze.out);

    const PythonRun check = runPython({QString::fromStdString((test::sourceDir() / "tools" / "check_session_h5py.py").string()),
                                       QString::fromStdString(session.string()), QString::fromStdString(json.string())});
    QVERIFY2(check.exitCode == 0, check.output.c_str());
    qInfo("%s", check.output.c_str());
}

QTEST_APPLESS_MAIN(TestSessionH5py)
#include "tst_session_h5py.moc"
