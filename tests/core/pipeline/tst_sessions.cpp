// Sessions find their model from any folder: Save Session stores the model's path absolute (a relative one broke when
// the session was opened from another folder), and an older session's relative path is looked up from the current
// folder and then from the session's folder (locateSessionModel), so the workbench can open the model or ask where it is.

#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "pipeline/sessions.h"

#include <QtTest>

using namespace mla;
using namespace mla::pipeline;
namespace fs = std::filesystem;

namespace {

// Runs `f` with the current folder set to `dir`, and restores it.
template <typename F>
void inFolder(const fs::path& dir, F f)
{
    const fs::path before = fs::current_path();
    fs::current_path(dir);
    try {
        f();
    } catch (...) {
        fs::current_path(before);
        throw;
    }
    fs::current_path(before);
}

} // namespace

class TestSessions : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void savedSessionStoresTheModelAbsolute()
    {
        const fs::path dir = test::scratchDir("sessions_absolute");
        fs::create_directories(dir / "models");
        fs::copy_file(test::demoDir() / "stories260K.bin", dir / "models" / "demo.bin");
        auto analysis = std::make_shared<AnalysisResult>(test::syntheticAnalysis(test::sixLayerShape()));
        analysis->modelPath = "models/demo.bin"; // as given on a command line run in `dir`
        SessionContent content;
        content.analysis = analysis;
        inFolder(dir, [&] { saveSession(content, nullptr, "work.h5", ExecutionContext()); });
        // Opened from elsewhere: the stored path is absolute and names the model.
        const fs::path elsewhere = test::scratchDir("sessions_elsewhere");
        inFolder(elsewhere, [&] {
            const Session s = openSession(dir / "work.h5", ExecutionContext());
            const fs::path stored = s.analysis.modelPath;
            QVERIFY2(stored.is_absolute(), s.analysis.modelPath.c_str());
            QVERIFY(fs::equivalent(stored, dir / "models" / "demo.bin"));
            const auto found = locateSessionModel(dir / "work.h5", s.analysis.modelPath);
            QVERIFY(found && fs::equivalent(*found, dir / "models" / "demo.bin"));
        });
        // A path that names nothing is kept as it was (it may be a model on another machine).
        analysis->modelPath = "nowhere/model.bin";
        inFolder(dir, [&] { saveSession(content, nullptr, "other.h5", ExecutionContext()); });
        QCOMPARE(openSession(dir / "other.h5", ExecutionContext()).analysis.modelPath, std::string("nowhere/model.bin"));
    }

    void olderRelativePathsAreFound()
    {
        const fs::path dir = test::scratchDir("sessions_relative");
        fs::copy_file(test::demoDir() / "stories260K.bin", dir / "demo.bin");
        const fs::path elsewhere = test::scratchDir("sessions_relative_elsewhere");
        inFolder(elsewhere, [&] {
            // Not in the current folder: found beside the session.
            const auto found = locateSessionModel(dir / "old.h5", "demo.bin");
            QVERIFY(found && found->is_absolute() && fs::equivalent(*found, dir / "demo.bin"));
            QVERIFY(!locateSessionModel(dir / "old.h5", "missing.bin"));
            QVERIFY(!locateSessionModel(dir / "old.h5", ""));
            QVERIFY(!locateSessionModel(dir / "old.h5", (dir / "gone.bin").string()));
        });
    }
};

QTEST_MAIN(TestSessions)
#include "tst_sessions.moc"
