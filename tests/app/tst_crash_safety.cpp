// Crash safety of everything the CLI writes: the process is killed with SIGKILL in the middle of an export and of a
// session save, while its output is half written under the temporary name. Nothing may then exist under the final
// name (or a previous output there stays byte for byte as it was), and the next run succeeds and leaves no staging
// behind.
#include "common/sanitizer.h"
#include "common/test_support.h"

#include "formats/synthetic_checkpoint.h"

#include <QElapsedTimer>
#include <QProcess>
#include <QThread>

namespace fs = std::filesystem;

namespace {

// Temporary names of a staged write of `destination` (".<name>.partial-<pid>", see util/staged_output.h).
std::vector<fs::path> stagingEntries(const fs::path& destination)
{
    std::vector<fs::path> out;
    const std::string prefix = "." + destination.filename().string() + ".partial-";
    for (const auto& e : fs::directory_iterator(destination.parent_path()))
        if (e.path().filename().string().rfind(prefix, 0) == 0)
            out.push_back(e.path());
    return out;
}

// Bytes written so far under the staging name (a file, or the files of a folder).
std::uintmax_t stagedBytes(const fs::path& staging)
{
    std::error_code ec;
    if (fs::is_regular_file(staging, ec))
        return fs::file_size(staging, ec);
    std::uintmax_t total = 0;
    for (fs::recursive_directory_iterator it(staging, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec))
            total += it->file_size(ec);
    return total;
}

struct KillResult {
    bool killedMidWrite = false; // false: the run finished before any staged data appeared
    std::string log;
};

// Starts the CLI and kills it (SIGKILL) as soon as its staged output for `destination` holds at least `minBytes`.
KillResult killDuringWrite(const std::vector<std::string>& args, const fs::path& destination, std::uintmax_t minBytes)
{
    QProcess process;
    QStringList list;
    for (const auto& a : args)
        list << QString::fromStdString(a);
    process.start(QString::fromStdString(mla::test::cliPath().string()), list);
    KillResult result;
    if (!process.waitForStarted(10000)) {
        result.log = "could not start the CLI";
        return result;
    }
    QElapsedTimer timer;
    timer.start();
    while (process.state() != QProcess::NotRunning && timer.elapsed() < 300000) {
        const auto staging = stagingEntries(destination);
        if (!staging.empty() && stagedBytes(staging.front()) >= minBytes) {
            process.kill();
            process.waitForFinished(10000);
            result.killedMidWrite = process.exitStatus() == QProcess::CrashExit;
            result.log = "killed after " + std::to_string(timer.elapsed()) + " ms with " + std::to_string(stagedBytes(staging.front()))
                         + " bytes staged";
            return result;
        }
        process.waitForFinished(2);
    }
    process.kill();
    process.waitForFinished(10000);
    result.log = "finished before the kill: exit " + std::to_string(process.exitCode()) + ", "
                 + process.readAllStandardError().toStdString();
    return result;
}

std::string fileContents(const fs::path& p)
{
    return mla::test::readTextFile(p);
}

} // namespace

class TestCrashSafety : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void exportKilledMidway();
    void exportKilledOverPreviousExport();
    void sessionSaveKilledMidway();

private:
    fs::path m_dir;
    fs::path m_model;
};

void TestCrashSafety::initTestCase()
{
    // What is checked here is the write protocol under SIGKILL, not memory safety (the staged writes run under the
    // sanitizers in tst_cli_output_safety); under AddressSanitizer its five conversions of a 16-layer model took four
    // minutes, the longest test of the sanitizer tree.
    if (mla::test::underAddressSanitizer())
        QSKIP("kill safety is checked in the ordinary build; under AddressSanitizer its 16-layer conversions take minutes");
    if (qEnvironmentVariableIsEmpty("OMP_WAIT_POLICY"))
        qputenv("OMP_WAIT_POLICY", "passive");
    m_dir = mla::test::scratchDir("crash_safety");
    // A model whose export takes long enough to be caught in the middle: 16 layers of hidden 512, float32 (~170 MB
    // written). The score-free "high" strategy needs no calibration, so the run is conversion and writing only.
    mla::ModelConfig c;
    c.architecture = "llama";
    c.hidden = 512;
    c.ffn = 1024;
    c.layers = 16;
    c.heads = 8;
    c.kvHeads = 8;
    c.headDim = 64;
    c.vocab = 256;
    c.maxPositions = 256;
    c.bosId = 1;
    c.eosIds = {2};
    mla::SyntheticOptions options;
    options.dtype = mla::DType::F32;
    m_model = m_dir / "model";
    mla::writeSyntheticCheckpoint({"crash-test", "crash-safety test model", c}, options, m_model);
}

void TestCrashSafety::exportKilledMidway()
{
    const fs::path out = m_dir / "export";
    const std::vector<std::string> convert = {"convert", m_model.string(), "--out", out.string(), "--rope-strategy", "high",
                                              "--rope-pairs", "2", "--latent-dim", "256", "--quiet"};
    const KillResult killed = killDuringWrite(convert, out, 1 << 20);
    QVERIFY2(killed.killedMidWrite, killed.log.c_str());
    qInfo("%s", killed.log.c_str());
    // The half-written folder exists only under its temporary name.
    QVERIFY2(!fs::exists(out), "a killed export left a folder under the final name");
    QCOMPARE(stagingEntries(out).size(), std::size_t(1));

    // The next run succeeds, clears the dead run's staging and leaves a loadable model.
    const auto r = mla::test::runCli(convert, 300000);
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    QVERIFY(fs::exists(out / "config.json"));
    QVERIFY2(stagingEntries(out).empty(), "staging left beside the export");
    const auto info = mla::test::runCli({"info", out.string(), "--json"});
    QVERIFY2(info.exitCode == 0, info.err.c_str());
    QVERIFY(info.out.find("\"mla\"") != std::string::npos);
}

void TestCrashSafety::exportKilledOverPreviousExport()
{
    // A finished export under the final name survives a killed re-export byte for byte.
    const fs::path out = m_dir / "replaced";
    const std::vector<std::string> first = {"convert", m_model.string(), "--out", out.string(), "--rope-strategy", "high",
                                            "--rope-pairs", "2", "--latent-dim", "256", "--quiet"};
    const auto r = mla::test::runCli(first, 300000);
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    const std::string config = fileContents(out / "config.json");
    const std::string weights = fileContents(out / "model.safetensors");

    std::vector<std::string> second = first;
    second[second.size() - 2] = "128"; // another latent width: different files
    second.push_back("--force"); // the folder holds the first export: replaced only when forced
    const KillResult killed = killDuringWrite(second, out, 1 << 20);
    QVERIFY2(killed.killedMidWrite, killed.log.c_str());
    QVERIFY(fileContents(out / "config.json") == config);
    QVERIFY(fileContents(out / "model.safetensors") == weights);

    const auto again = mla::test::runCli(second, 300000);
    QVERIFY2(again.exitCode == 0, again.err.c_str());
    QVERIFY(fileContents(out / "config.json") != config);
    QVERIFY2(stagingEntries(out).empty(), "staging left beside the export");
}

void TestCrashSafety::sessionSaveKilledMidway()
{
    // A session of this model holds every layer's 512 x 512 input covariance, several MB of HDF5: the save is caught
    // while the file is being written.
    const fs::path session = m_dir / "analysis.h5";
    const std::vector<std::string> analyze = {"analyze", m_model.string(), "--calib-samples", "4", "--calib-seq-len", "8",
                                              "--session", session.string(), "--quiet"};
    const KillResult killed = killDuringWrite(analyze, session, 4096);
    QVERIFY2(killed.killedMidWrite, killed.log.c_str());
    qInfo("%s", killed.log.c_str());
    QVERIFY2(!fs::exists(session), "a killed save left a file under the final name");

    const auto r = mla::test::runCli(analyze, 300000);
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    QVERIFY2(stagingEntries(session).empty(), "staging left beside the session");
    const auto read = mla::test::runCli({"session", session.string(), "--json"});
    QVERIFY2(read.exitCode == 0, read.err.c_str());
}

QTEST_GUILESS_MAIN(TestCrashSafety)
#include "tst_crash_safety.moc"
