// The output policy every writer goes through (util/output_safety.h, util/staged_output.h): what may be created,
// replaced, replaced only when forced, or never touched; inputs compared by device and inode through links; the
// staging swap that leaves old contents intact until the new output is complete.
#include "common/test_support.h"

#include "util/error.h"
#include "util/mapped_file.h"
#include "util/output_safety.h"
#include "util/staged_output.h"

#include <fstream>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

using namespace mla;
namespace fs = std::filesystem;

namespace {

void writeFile(const fs::path& p, const std::string& text)
{
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

// Every file under `root` with its content, to show a folder untouched.
std::map<std::string, std::string> snapshot(const fs::path& root)
{
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
        const fs::path rel = fs::relative(e.path(), root);
        if (e.is_symlink())
            files[rel.string()] = "-> " + fs::read_symlink(e.path()).string();
        else if (e.is_regular_file())
            files[rel.string()] = test::readTextFile(e.path());
        else
            files[rel.string()] = "<dir>";
    }
    return files;
}

template <class F>
std::string errorOf(F&& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

// A folder as a finished export leaves it, written through StagedDirectory.
void writeExport(const fs::path& folder, const std::string& content, const OutputOptions& options = {})
{
    StagedDirectory staged(folder, options);
    writeFile(staged.path() / "config.json", content);
    writeFile(staged.path() / "model.safetensors", content + content);
    staged.commit();
}

} // namespace

class TestOutputSafety : public QObject {
    Q_OBJECT

private slots:
    void init();
    void folderVerdicts();
    void foreignFolderIsNeverReplaced();
    void ownFolderNeedsForceAndSwapsAtTheEnd();
    void ownSubFolderIsOursOnlyWhileItHoldsOurFiles();
    void unfinishedReplacementLeavesOldContents();
    void folderThatIsOrHoldsAnInput();
    void folderInsideAnInputFolder();
    void fileVerdicts();
    void fileThatIsAnInputThroughLinks();
    void mappedFilesAreInputs();
    void deviceAndFifoAreNeverReplaced();
    void destinationChangedBeforeCommit();
    void stagedFileIsFlushedAndRenamedInItsFolder();

private:
    fs::path m_dir;
};

void TestOutputSafety::init()
{
    m_dir = test::scratchDir(QTest::currentTestFunction());
}

void TestOutputSafety::folderVerdicts()
{
    QCOMPARE(inspectOutputFolder(m_dir / "new").verdict, OutputVerdict::Create);
    fs::create_directories(m_dir / "empty");
    QCOMPARE(inspectOutputFolder(m_dir / "empty").verdict, OutputVerdict::Replace);
    writeFile(m_dir / "a-file", "x");
    QCOMPARE(inspectOutputFolder(m_dir / "a-file").verdict, OutputVerdict::Refused);
    fs::create_directory_symlink(m_dir / "empty", m_dir / "link");
    const OutputCheck link = inspectOutputFolder(m_dir / "link");
    QCOMPARE(link.verdict, OutputVerdict::Refused);
    QVERIFY2(link.problem.find("symbolic link") != std::string::npos, link.problem.c_str());
    QCOMPARE(inspectOutputFolder("/").verdict, OutputVerdict::Refused);
}

void TestOutputSafety::foreignFolderIsNeverReplaced()
{
    // The data-loss case of the issue: any non-empty folder given as the output was deleted.
    const fs::path mine = m_dir / "thesis";
    writeFile(mine / "chapter1.tex", "years of work");
    writeFile(mine / "figures" / "plot.pdf", "%PDF");
    const auto before = snapshot(mine);
    const OutputCheck check = inspectOutputFolder(mine);
    QCOMPARE(check.verdict, OutputVerdict::Refused);
    QVERIFY2(check.problem.find("chapter1.tex") != std::string::npos, check.problem.c_str());
    for (const bool force : {false, true}) {
        const std::string error = errorOf([&] { writeExport(mine, "{}", OutputOptions{force, {}}); });
        QVERIFY2(error.find("did not write") != std::string::npos, error.c_str());
        QVERIFY(snapshot(mine) == before);
    }
}

void TestOutputSafety::ownFolderNeedsForceAndSwapsAtTheEnd()
{
    const fs::path out = m_dir / "export";
    writeExport(out, "first");
    QVERIFY(fs::exists(out / kOutputMarkerName));
    const std::string marker = test::readTextFile(out / kOutputMarkerName);
    QVERIFY2(marker.find("\"config.json\"") != std::string::npos && marker.find("\"model.safetensors\"") != std::string::npos,
             marker.c_str());
    const OutputCheck check = inspectOutputFolder(out);
    QCOMPARE(check.verdict, OutputVerdict::NeedsForce);
    QVERIFY2(check.problem.find("--force") != std::string::npos, check.problem.c_str());

    const std::string error = errorOf([&] { writeExport(out, "second"); });
    QVERIFY2(error.find("not empty") != std::string::npos, error.c_str());
    QCOMPARE(test::readTextFile(out / "config.json"), std::string("first"));

    writeExport(out, "second", OutputOptions{true, {}});
    QCOMPARE(test::readTextFile(out / "config.json"), std::string("second"));
    for (const auto& e : fs::directory_iterator(m_dir))
        QVERIFY2(e.path().filename().string().find(".partial-") == std::string::npos, e.path().c_str());

    // A file the user added makes the folder theirs again: never replaced, not even when forced.
    writeFile(out / "notes.txt", "mine");
    QCOMPARE(inspectOutputFolder(out).verdict, OutputVerdict::Refused);
    QVERIFY(!errorOf([&] { writeExport(out, "third", OutputOptions{true, {}}); }).empty());
    QCOMPARE(test::readTextFile(out / "notes.txt"), std::string("mine"));
}

void TestOutputSafety::ownSubFolderIsOursOnlyWhileItHoldsOurFiles()
{
    // An MLA export carries recovery/ (the recipe): the marker lists its files, so a forced re-export may replace it,
    // but a file or link the user put inside makes the whole folder theirs.
    const fs::path out = m_dir / "export";
    {
        StagedDirectory staged(out, {});
        writeFile(staged.path() / "config.json", "first");
        writeFile(staged.path() / "recovery" / "distill.py", "recipe");
        staged.commit();
    }
    const std::string marker = test::readTextFile(out / kOutputMarkerName);
    QVERIFY2(marker.find("\"recovery/distill.py\"") != std::string::npos, marker.c_str());
    QCOMPARE(inspectOutputFolder(out).verdict, OutputVerdict::NeedsForce);
    writeFile(out / "recovery" / "notes.txt", "mine");
    const OutputCheck added = inspectOutputFolder(out);
    QCOMPARE(added.verdict, OutputVerdict::Refused);
    QVERIFY2(added.problem.find("recovery") != std::string::npos, added.problem.c_str());
    fs::remove(out / "recovery" / "notes.txt");
    QCOMPARE(inspectOutputFolder(out).verdict, OutputVerdict::NeedsForce);
    fs::create_directory_symlink(m_dir, out / "recovery" / "elsewhere");
    QCOMPARE(inspectOutputFolder(out).verdict, OutputVerdict::Refused);
    QVERIFY(fs::exists(m_dir / "export" / "config.json"));
}

void TestOutputSafety::unfinishedReplacementLeavesOldContents()
{
    const fs::path out = m_dir / "export";
    writeExport(out, "old");
    const auto before = snapshot(out);
    {
        // Forced, but the job fails (or is cancelled) before commit: the old export stays as it was.
        StagedDirectory staged(out, OutputOptions{true, {}});
        writeFile(staged.path() / "config.json", "half");
        QVERIFY(snapshot(out) == before);
    }
    QVERIFY(snapshot(out) == before);
    for (const auto& e : fs::directory_iterator(m_dir))
        QVERIFY2(e.path() == out, e.path().c_str());
}

void TestOutputSafety::folderThatIsOrHoldsAnInput()
{
    const fs::path model = m_dir / "model";
    writeFile(model / "config.json", "{}");
    writeFile(model / "model.safetensors", "weights");
    const auto before = snapshot(model);
    const std::vector<fs::path> inputs = {model};
    // The folder itself, under its own name, a different spelling and a symbolic link.
    fs::create_directory_symlink(model, m_dir / "alias");
    for (const fs::path& out : {model, m_dir / "." / "model" / "", m_dir / "alias"}) {
        const OutputCheck check = inspectOutputFolder(out, inputs);
        QCOMPARE(check.verdict, OutputVerdict::Refused);
        QVERIFY2(check.problem.find("input") != std::string::npos, check.problem.c_str());
        QVERIFY(!errorOf([&] { writeExport(out, "x", OutputOptions{true, inputs}); }).empty());
    }
    // A folder holding an input file: replacing it would delete the input.
    writeExport(m_dir / "outer", "ours");
    writeFile(m_dir / "outer" / "model.safetensors", "x"); // listed in the marker: the folder still counts as ours
    const OutputCheck holds = inspectOutputFolder(m_dir / "outer", {m_dir / "outer" / "model.safetensors"});
    QCOMPARE(holds.verdict, OutputVerdict::Refused);
    QVERIFY2(holds.problem.find("holds the input") != std::string::npos, holds.problem.c_str());
    QVERIFY(snapshot(model) == before);
}

void TestOutputSafety::folderInsideAnInputFolder()
{
    const fs::path model = m_dir / "model";
    writeFile(model / "config.json", "{}");
    const OutputCheck inside = inspectOutputFolder(model / "mla", {model});
    QCOMPARE(inside.verdict, OutputVerdict::Refused);
    QVERIFY2(inside.problem.find("inside the input folder") != std::string::npos, inside.problem.c_str());
    fs::create_directory_symlink(model, m_dir / "alias");
    QCOMPARE(inspectOutputFolder(m_dir / "alias" / "deeper" / "mla", {model}).verdict, OutputVerdict::Refused);
    // An input file's folder is not itself an input: writing beside a checkpoint file is fine.
    QCOMPARE(inspectOutputFolder(m_dir / "mla", {model / "config.json"}).verdict, OutputVerdict::Create);
}

void TestOutputSafety::fileVerdicts()
{
    QCOMPARE(inspectOutputFile(m_dir / "new.h5").verdict, OutputVerdict::Create);
    writeFile(m_dir / "old.h5", "\x89HDF\r\n\x1a\n and more");
    writeFile(m_dir / "paper.pdf", "%PDF");
    const FileKind session{"an HDF5 session file", isHdf5File};
    QCOMPARE(inspectOutputFile(m_dir / "old.h5", {}, session).verdict, OutputVerdict::Replace);
    const OutputCheck other = inspectOutputFile(m_dir / "paper.pdf", {}, session);
    QCOMPARE(other.verdict, OutputVerdict::NeedsForce);
    QVERIFY2(other.problem.find("not an HDF5 session file") != std::string::npos, other.problem.c_str());
    QVERIFY(!errorOf([&] { requireOutputFile(m_dir / "paper.pdf", {}, session); }).empty());
    QVERIFY(errorOf([&] { requireOutputFile(m_dir / "paper.pdf", OutputOptions{true, {}}, session); }).empty());
    fs::create_directories(m_dir / "folder");
    QCOMPARE(inspectOutputFile(m_dir / "folder").verdict, OutputVerdict::Refused);
    fs::create_symlink(m_dir / "old.h5", m_dir / "link.h5");
    QCOMPARE(inspectOutputFile(m_dir / "link.h5", {}, session).verdict, OutputVerdict::Refused);
}

void TestOutputSafety::fileThatIsAnInputThroughLinks()
{
    const fs::path model = m_dir / "stories.bin";
    writeFile(model, "checkpoint bytes");
    fs::create_hard_link(model, m_dir / "hard.bin");
    fs::create_symlink(model, m_dir / "soft.bin");
    for (const fs::path& out : {model, m_dir / "hard.bin", m_dir / "soft.bin"}) {
        const OutputCheck check = inspectOutputFile(out, {model});
        QCOMPARE(check.verdict, OutputVerdict::Refused);
        QVERIFY2(check.problem.find("input") != std::string::npos, check.problem.c_str());
        const std::string error = errorOf([&] {
            StagedFile staged(out, OutputOptions{true, {model}});
            writeFile(staged.path(), "session");
            staged.commit();
        });
        QVERIFY2(error.find("input") != std::string::npos, error.c_str());
    }
    QCOMPARE(test::readTextFile(model), std::string("checkpoint bytes"));
    QVERIFY(fs::is_symlink(m_dir / "soft.bin"));
}

void TestOutputSafety::mappedFilesAreInputs()
{
    // The weights of an open model are inputs without anyone listing them.
    const fs::path weights = m_dir / "model.safetensors";
    writeFile(weights, "weights");
    {
        const auto mapped = MappedFile::open(weights);
        QCOMPARE(inspectOutputFile(weights).verdict, OutputVerdict::Refused);
        QCOMPARE(inspectOutputFolder(m_dir).verdict, OutputVerdict::Refused);
    }
    QCOMPARE(inspectOutputFile(weights).verdict, OutputVerdict::Replace);
}

void TestOutputSafety::deviceAndFifoAreNeverReplaced()
{
    QCOMPARE(inspectOutputFile("/dev/null").verdict, OutputVerdict::Refused);
    QCOMPARE(inspectOutputFolder("/dev/null").verdict, OutputVerdict::Refused);
    const fs::path fifo = m_dir / "pipe";
    QVERIFY(::mkfifo(fifo.c_str(), 0600) == 0);
    const OutputCheck check = inspectOutputFile(fifo);
    QCOMPARE(check.verdict, OutputVerdict::Refused);
    QVERIFY2(check.problem.find("FIFO") != std::string::npos, check.problem.c_str());
    QVERIFY(!errorOf([&] { StagedFile staged(fifo, OutputOptions{true, {}}); }).empty());
    QVERIFY(fs::is_fifo(fifo));
    // A device node of our own (root only): the rename that replaced /dev/null in the issue never happens.
    const fs::path device = m_dir / "null";
    if (::mknod(device.c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0) {
        const std::string error = errorOf([&] {
            StagedFile staged(device, OutputOptions{true, {}});
            writeFile(staged.path(), "x");
            staged.commit();
        });
        QVERIFY2(error.find("device") != std::string::npos, error.c_str());
        QVERIFY(fs::is_character_file(device));
    }
}

void TestOutputSafety::destinationChangedBeforeCommit()
{
    // Checked when the write starts and again before the rename: a FIFO that appears meanwhile is not replaced.
    const fs::path out = m_dir / "session.h5";
    const std::string error = errorOf([&] {
        StagedFile staged(out);
        writeFile(staged.path(), "data");
        QVERIFY(::mkfifo(out.c_str(), 0600) == 0);
        staged.commit();
    });
    QVERIFY2(error.find("FIFO") != std::string::npos, error.c_str());
    QVERIFY(fs::is_fifo(out));
    for (const auto& e : fs::directory_iterator(m_dir))
        QVERIFY2(e.path() == out, e.path().c_str());
}

void TestOutputSafety::stagedFileIsFlushedAndRenamedInItsFolder()
{
    // The staging file lives beside the destination (same file system, so the rename is atomic) and replaces the old
    // file in one step: the old content stays complete until then.
    const fs::path out = m_dir / "session.h5";
    writeFile(out, "old");
    StagedFile staged(out);
    QCOMPARE(staged.path().parent_path(), fs::absolute(out).parent_path());
    writeFile(staged.path(), "new");
    QCOMPARE(test::readTextFile(out), std::string("old"));
    struct stat before {};
    QVERIFY(::stat(staged.path().c_str(), &before) == 0);
    staged.commit();
    struct stat after {};
    QVERIFY(::stat(out.c_str(), &after) == 0);
    QCOMPARE(after.st_ino, before.st_ino);
    QCOMPARE(test::readTextFile(out), std::string("new"));
}

QTEST_GUILESS_MAIN(TestOutputSafety)
#include "tst_output_safety.moc"
