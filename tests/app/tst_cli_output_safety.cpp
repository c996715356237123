// The CLI's outputs never destroy data: `convert --out` onto the input model's folder, a folder holding the input or
// any folder with other files is refused (with --force too); an earlier export is replaced only with --force;
// `analyze --session` onto the input checkpoint, a FIFO or a device node is refused before the analysis runs.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include <QtTest>

#include <map>
#include <sys/stat.h>
#include <sys/sysmacros.h>

using namespace mla;
namespace fs = std::filesystem;

namespace {

std::map<std::string, std::string> snapshot(const fs::path& root)
{
    std::map<std::string, std::string> files;
    if (fs::is_regular_file(root)) {
        files[""] = test::readTextFile(root);
        return files;
    }
    for (const auto& e : fs::recursive_directory_iterator(root))
        files[fs::relative(e.path(), root).string()] = e.is_regular_file() ? test::readTextFile(e.path()) : "<dir>";
    return files;
}

std::vector<std::string> convertArgs(const fs::path& model, const fs::path& out)
{
    return {"convert", model.string(), "--out", out.string(), "--rope-strategy", "high", "--rope-pairs", "1",
            "--latent-dim", "8", "--quiet"};
}

} // namespace

class TestCliOutputSafety : public QObject {
    Q_OBJECT

private slots:
    void init();
    void convertOntoTheInputFolderIsRefused();
    void convertOntoAFolderHoldingTheInputIsRefused();
    void convertOntoAForeignFolderIsRefused();
    void convertOverAnEarlierExportNeedsForce();
    void sessionOntoTheInputCheckpointIsRefused();
    void sessionOntoFifoOrDeviceIsRefused();
    void sessionOverAnotherFileNeedsForce();

private:
    fs::path m_dir;
    fs::path m_model; // a private copy of stories260K-hf
};

void TestCliOutputSafety::init()
{
    m_dir = test::scratchDir(QTest::currentTestFunction());
    m_model = m_dir / "stories260K-hf";
    fs::copy(test::realModelPath("stories260K-hf"), m_model, fs::copy_options::recursive);
}

void TestCliOutputSafety::convertOntoTheInputFolderIsRefused()
{
    const auto before = snapshot(m_model);
    for (const bool force : {false, true}) {
        auto args = convertArgs(m_model, m_model);
        if (force)
            args.push_back("--force");
        const auto r = test::runCli(args);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("input") != std::string::npos, r.err.c_str());
        QVERIFY(snapshot(m_model) == before);
    }
    // Through a symbolic link to the same folder.
    fs::create_directory_symlink(m_model, m_dir / "alias");
    const auto r = test::runCli(convertArgs(m_model, m_dir / "alias"));
    QCOMPARE(r.exitCode, 1);
    QVERIFY(snapshot(m_model) == before);
}

void TestCliOutputSafety::convertOntoAFolderHoldingTheInputIsRefused()
{
    // An earlier export, reopened as the input: replacing its folder would delete the file being read.
    const fs::path out = m_dir / "mla";
    const auto first = test::runCli(convertArgs(m_model, out));
    QVERIFY2(first.exitCode == 0, first.err.c_str());
    const auto before = snapshot(out);
    auto args = convertArgs(out / "model.safetensors", out);
    args.push_back("--force");
    const auto r = test::runCli(args);
    QCOMPARE(r.exitCode, 1);
    // (The export folder is the input model's folder here, and it holds the input file: either refusal is right.)
    QVERIFY2(r.err.find("input") != std::string::npos, r.err.c_str());
    QVERIFY(snapshot(out) == before);
    // Into the input folder.
    const auto modelBefore = snapshot(m_model);
    const auto inside = test::runCli(convertArgs(m_model, m_model / "mla"));
    QCOMPARE(inside.exitCode, 1);
    QVERIFY2(inside.err.find("inside the input folder") != std::string::npos, inside.err.c_str());
    QVERIFY(snapshot(m_model) == modelBefore);
}

void TestCliOutputSafety::convertOntoAForeignFolderIsRefused()
{
    const fs::path mine = m_dir / "documents";
    fs::create_directories(mine);
    test::writeTextFile(mine / "letter.txt", "dear reader");
    const auto before = snapshot(mine);
    for (const bool force : {false, true}) {
        auto args = convertArgs(m_model, mine);
        if (force)
            args.push_back("--force");
        const auto r = test::runCli(args);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("letter.txt") != std::string::npos, r.err.c_str());
        QVERIFY(snapshot(mine) == before);
    }
    // An empty folder is fine, and is checked before any work: a refused run takes no conversion time.
    fs::create_directories(m_dir / "empty");
    const auto ok = test::runCli(convertArgs(m_model, m_dir / "empty"));
    QVERIFY2(ok.exitCode == 0, ok.err.c_str());
    QVERIFY(fs::exists(m_dir / "empty" / "config.json"));
}

void TestCliOutputSafety::convertOverAnEarlierExportNeedsForce()
{
    const fs::path out = m_dir / "mla";
    const auto first = test::runCli(convertArgs(m_model, out));
    QVERIFY2(first.exitCode == 0, first.err.c_str());
    const auto before = snapshot(out);
    auto again = convertArgs(m_model, out);
    again[again.size() - 2] = "16"; // another latent width: different weights
    const auto refused = test::runCli(again);
    QCOMPARE(refused.exitCode, 1);
    QVERIFY2(refused.err.find("--force") != std::string::npos, refused.err.c_str());
    QVERIFY(snapshot(out) == before);
    again.push_back("--force");
    const auto forced = test::runCli(again);
    QVERIFY2(forced.exitCode == 0, forced.err.c_str());
    QVERIFY(snapshot(out) != before);
    const auto info = test::runCli({"info", out.string(), "--json"});
    QVERIFY2(info.exitCode == 0, info.err.c_str());
}

void TestCliOutputSafety::sessionOntoTheInputCheckpointIsRefused()
{
    const fs::path checkpoint = m_dir / "stories260K.bin";
    fs::copy_file(test::realModelPath("stories260K"), checkpoint);
    const auto tokenizer = test::realModelPath("stories260K").parent_path() / "tok512.bin";
    fs::copy_file(tokenizer, m_dir / "tok512.bin");
    const auto before = snapshot(checkpoint);
    for (const fs::path& target : {checkpoint, m_dir / "tok512.bin", m_model / "model.safetensors"}) {
        const fs::path model = target == m_model / "model.safetensors" ? m_model : checkpoint;
        const auto modelBefore = snapshot(target);
        const auto r = test::runCli({"analyze", model.string(), "--calib-samples", "1", "--calib-seq-len", "8", "--session",
                                     target.string(), "--quiet", "--force"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("input") != std::string::npos, r.err.c_str());
        QVERIFY(snapshot(target) == modelBefore);
    }
    QVERIFY(snapshot(checkpoint) == before);
}

void TestCliOutputSafety::sessionOntoFifoOrDeviceIsRefused()
{
    const fs::path fifo = m_dir / "pipe.h5";
    QVERIFY(::mkfifo(fifo.c_str(), 0600) == 0);
    std::vector<fs::path> targets{fifo};
    const fs::path device = m_dir / "null.h5";
    if (::mknod(device.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0)
        targets.push_back(device);
    for (const fs::path& target : targets) {
        const auto r = test::runCli({"analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "8", "--session",
                                     target.string(), "--quiet", "--force"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("never replaced") != std::string::npos, r.err.c_str());
    }
    QVERIFY(fs::is_fifo(fifo));
    if (targets.size() > 1)
        QVERIFY(fs::is_character_file(device));
}

void TestCliOutputSafety::sessionOverAnotherFileNeedsForce()
{
    const fs::path notes = m_dir / "notes.h5";
    test::writeTextFile(notes, "not a session");
    const std::vector<std::string> args{"analyze", "--demo", "--calib-samples", "1", "--calib-seq-len", "8", "--session",
                                        notes.string(), "--quiet"};
    const auto refused = test::runCli(args);
    QCOMPARE(refused.exitCode, 1);
    QVERIFY2(refused.err.find("not an HDF5 session file") != std::string::npos, refused.err.c_str());
    QCOMPARE(test::readTextFile(notes), std::string("not a session"));
    auto forced = args;
    forced.push_back("--force");
    const auto r = test::runCli(forced);
    QVERIFY2(r.exitCode == 0, r.err.c_str());
    // The session just written is replaced again without --force: it is a session file.
    const auto again = test::runCli(args);
    QVERIFY2(again.exitCode == 0, again.err.c_str());
}

QTEST_GUILESS_MAIN(TestCliOutputSafety)
#include "tst_cli_output_safety.moc"
