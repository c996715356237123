// The window's questions, answered offscreen through MainWindow::setPrompts: the unsaved-work prompt before opening
// another model or session, or quitting (Save / Discard / Cancel, each doing what it says), and the prompts of a session opened
// without its model (open it where it still is; locate it when it moved, or leave the app as it was).

#include "common/test_support.h"
#include "common/workbench_fixtures.h"
#include "document/workbench.h"
#include "main_window.h"
#include "user_prompts.h"

#include <QFile>
#include <QFileInfo>
#include <QSettings>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTest>

#include <filesystem>

using namespace mla;

namespace {

using Answer = UserPrompts::UnsavedAnswer;
using test::demoPath;
using test::kWorkbenchTimeoutMs;
using test::waitIdle;

// Answers what a test scripted and records what was asked; a question the test did not expect fails it.
class ScriptedPrompts final : public UserPrompts {
public:
    Answer unsaved = Answer::Cancel;
    QString saveAs;      // the session file "chosen" in the save dialog; empty: cancelled
    bool openModel = false;
    QString locatedAs;   // the checkpoint "located"; empty: cancelled
    QStringList asked;   // one line per question: "unsaved: quitting", "locate: /x/model.bin from /x", ...

    Answer unsavedWork(QWidget*, const QString& action) override
    {
        asked << QStringLiteral("unsaved: ") + action;
        return unsaved;
    }
    QString sessionFile(QWidget*, const QString& proposed) override
    {
        asked << QStringLiteral("save as: ") + proposed;
        return saveAs;
    }
    bool openSessionModel(QWidget*, const QString& model) override
    {
        asked << QStringLiteral("open model: ") + model;
        return openModel;
    }
    QString locateSessionModel(QWidget*, const QString& missing, const QString& folder) override
    {
        asked << QStringLiteral("locate: %1 from %2").arg(missing, folder);
        return locatedAs;
    }
};

QString scratchFolder(const std::string& name)
{
    return QString::fromStdString(test::scratchDir(name).string());
}

// Shows `w` with scripted prompts (the window owns them).
ScriptedPrompts* promptedWindow(MainWindow& w)
{
    auto prompts = std::make_unique<ScriptedPrompts>();
    ScriptedPrompts* raw = prompts.get();
    w.setPrompts(std::move(prompts));
    w.show();
    return raw;
}

// The demo model, then `session` on it: an analysis with nothing unsaved.
bool openAnalysed(MainWindow& w, const QString& session)
{
    Workbench* wb = w.workbench();
    w.openPath(demoPath());
    if (!QTest::qWaitFor([&] { return wb->hasModel() && !wb->isBusy(); }, kWorkbenchTimeoutMs))
        return false;
    QSignalSpy opened(wb, &Workbench::sessionOpened);
    w.openPath(session);
    return opened.wait(kWorkbenchTimeoutMs) && waitIdle(*wb) && wb->analysis() && !wb->hasUnsavedWork();
}

// A settings change the session does not hold.
void changeLatent(Workbench& wb)
{
    wb.setGlobalLatent(wb.resolvedLatent() == 9 ? 10 : 9);
}

} // namespace

class TestMainWindowPrompts : public QObject {
    Q_OBJECT
    QString m_session;      // the demo model's analysis (small calibration)
    QString m_movedSession; // made from a copy of the demo model that was then moved away
    QString m_movedModel;   // where that copy is now
    QString m_goneModel;    // where it was

private Q_SLOTS:
    void initTestCase()
    {
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, scratchFolder("prompts_settings"));
        const QString dir = scratchFolder("prompts_sessions");
        m_session = dir + QStringLiteral("/demo.h5");
        m_goneModel = dir + QStringLiteral("/before/stories.bin");
        m_movedModel = dir + QStringLiteral("/after/moved.bin");
        std::filesystem::create_directories((dir + QStringLiteral("/before")).toStdString());
        std::filesystem::create_directories((dir + QStringLiteral("/after")).toStdString());
        QFile::remove(m_goneModel);
        QFile::remove(m_movedModel);
        QVERIFY(QFile::copy(demoPath(), m_goneModel));
        m_movedSession = dir + QStringLiteral("/moved.h5");

        MainWindow w(MainWindow::Options{false, false});
        Workbench* wb = w.workbench();
        for (const auto& [model, session] : {std::pair{demoPath(), m_session}, std::pair{m_goneModel, m_movedSession}}) {
            wb->openModel(model);
            QVERIFY(QTest::qWaitFor([&] { return wb->hasModel() && wb->modelPath() == model && !wb->isBusy(); }, kWorkbenchTimeoutMs));
            CalibrationOptions calibration = wb->calibration();
            calibration.samples = 2;
            calibration.sequenceLength = 32;
            wb->changeCalibration(calibration, QStringLiteral("test"));
            wb->analyze();
            QVERIFY(waitIdle(*wb) && wb->analysis());
            QSignalSpy saved(wb, &Workbench::sessionSaved);
            wb->saveSession(session, true);
            QVERIFY(saved.wait(kWorkbenchTimeoutMs));
        }
        // The session's model moves away: locateSessionModel finds it neither where it was nor beside the session.
        QVERIFY(QFile::rename(m_goneModel, m_movedModel));
    }

    void unsavedWorkBeforeOpening_data()
    {
        QTest::addColumn<int>("answer");
        QTest::addColumn<bool>("chooseFile");
        QTest::newRow("cancel") << static_cast<int>(Answer::Cancel) << false;
        QTest::newRow("discard") << static_cast<int>(Answer::Discard) << false;
        QTest::newRow("save") << static_cast<int>(Answer::Save) << true;
        QTest::newRow("save, file dialog cancelled") << static_cast<int>(Answer::Save) << false;
    }

    void unsavedWorkBeforeOpening()
    {
        QFETCH(int, answer);
        QFETCH(bool, chooseFile);
        MainWindow w(MainWindow::Options{false, false});
        ScriptedPrompts* prompts = promptedWindow(w);
        QVERIFY(openAnalysed(w, m_session));
        QVERIFY2(prompts->asked.isEmpty(), qPrintable(prompts->asked.join(QLatin1Char('\n')))); // nothing unsaved yet
        Workbench* wb = w.workbench();
        changeLatent(*wb);
        const std::int64_t changed = wb->resolvedLatent();
        QVERIFY(wb->hasUnsavedWork());

        const QString saveAs = scratchFolder(std::string("prompts_open_") + QTest::currentDataTag()) + QStringLiteral("/changed.h5");
        QFile::remove(saveAs);
        prompts->unsaved = static_cast<Answer>(answer);
        prompts->saveAs = chooseFile ? saveAs : QString();
        QSignalSpy modelChanged(wb, &Workbench::modelChanged);
        QSignalSpy saved(wb, &Workbench::sessionSaved);
        w.openPath(demoPath());
        QCOMPARE(prompts->asked.value(0), QStringLiteral("unsaved: opening stories260K.bin"));

        if (answer == static_cast<int>(Answer::Discard)) {
            // Opened without saving: the model again, its analysis and changed settings gone, nothing written.
            QVERIFY(modelChanged.wait(kWorkbenchTimeoutMs));
            QVERIFY(waitIdle(*wb));
            QVERIFY(!wb->analysis());
            QCOMPARE(prompts->asked.size(), 1);
            QCOMPARE(saved.count(), 0);
            return;
        }
        if (answer == static_cast<int>(Answer::Save) && chooseFile) {
            // Saved first (the save dialog proposed the model's name), then opened.
            QCOMPARE(prompts->asked.value(1), QStringLiteral("save as: stories260K.h5"));
            QVERIFY(saved.wait(kWorkbenchTimeoutMs));
            QCOMPARE(saved.at(0).at(0).toString(), saveAs);
            QVERIFY(modelChanged.wait(kWorkbenchTimeoutMs));
            QVERIFY(waitIdle(*wb));
            QVERIFY(!wb->analysis());
            QCOMPARE(prompts->asked.size(), 2); // the save made the work clean: no second question before opening
            // The saved session holds the changed settings.
            QSignalSpy opened(wb, &Workbench::sessionOpened);
            w.openPath(saveAs);
            QVERIFY(opened.wait(kWorkbenchTimeoutMs));
            QCOMPARE(wb->resolvedLatent(), changed);
            return;
        }
        // Cancel, or Save with the file dialog cancelled: nothing happens, the work is still there and unsaved.
        if (answer == static_cast<int>(Answer::Save))
            QCOMPARE(prompts->asked.value(1), QStringLiteral("save as: stories260K.h5"));
        QVERIFY(waitIdle(*wb)); // a load or save, had one started, has delivered by now
        QCOMPARE(modelChanged.count(), 0);
        QCOMPARE(saved.count(), 0);
        QVERIFY(!QFileInfo::exists(saveAs));
        QVERIFY(wb->analysis());
        QCOMPARE(wb->resolvedLatent(), changed);
        QVERIFY(wb->hasUnsavedWork());
    }

    void unsavedWorkBeforeOpeningASession_data()
    {
        QTest::addColumn<int>("answer");
        QTest::newRow("cancel") << static_cast<int>(Answer::Cancel);
        QTest::newRow("discard") << static_cast<int>(Answer::Discard);
    }

    void unsavedWorkBeforeOpeningASession()
    {
        QFETCH(int, answer);
        MainWindow w(MainWindow::Options{false, false});
        ScriptedPrompts* prompts = promptedWindow(w);
        QVERIFY(openAnalysed(w, m_session));
        Workbench* wb = w.workbench();
        const std::int64_t stored = wb->resolvedLatent();
        changeLatent(*wb);
        const std::int64_t changed = wb->resolvedLatent();
        prompts->unsaved = static_cast<Answer>(answer);
        QSignalSpy opened(wb, &Workbench::sessionOpened);
        w.openPath(m_session);
        QCOMPARE(prompts->asked, QStringList({QStringLiteral("unsaved: opening demo.h5")}));
        if (answer == static_cast<int>(Answer::Discard)) {
            // The session replaces the changed settings with its own.
            QVERIFY(opened.wait(kWorkbenchTimeoutMs));
            QVERIFY(waitIdle(*wb));
            QCOMPARE(wb->resolvedLatent(), stored);
            QVERIFY(!wb->hasUnsavedWork());
        } else {
            QVERIFY(waitIdle(*wb));
            QCOMPARE(opened.count(), 0);
            QCOMPARE(wb->resolvedLatent(), changed);
            QVERIFY(wb->hasUnsavedWork());
        }
    }

    void unsavedCheckBeforeQuitting_data()
    {
        QTest::addColumn<int>("answer");
        QTest::newRow("cancel") << static_cast<int>(Answer::Cancel);
        QTest::newRow("discard") << static_cast<int>(Answer::Discard);
        QTest::newRow("save") << static_cast<int>(Answer::Save);
    }

    void unsavedCheckBeforeQuitting()
    {
        QFETCH(int, answer);
        MainWindow w(MainWindow::Options{false, false});
        ScriptedPrompts* prompts = promptedWindow(w);
        QVERIFY(openAnalysed(w, m_session));
        Workbench* wb = w.workbench();
        // Convert (the sanity check follows): its results are what a session would keep.
        wb->convert();
        QVERIFY(QTest::qWaitFor([&] { return wb->sanity().has_value() && !wb->isBusy(); }, kWorkbenchTimeoutMs));
        QVERIFY(wb->hasUnsavedWork());
        QVERIFY(prompts->asked.isEmpty());

        const QString saveAs = scratchFolder(std::string("prompts_quit_") + QTest::currentDataTag()) + QStringLiteral("/checked.h5");
        QFile::remove(saveAs);
        prompts->unsaved = static_cast<Answer>(answer);
        prompts->saveAs = saveAs;
        QSignalSpy saved(wb, &Workbench::sessionSaved);
        const bool closed = w.close();
        QCOMPARE(prompts->asked.value(0), QStringLiteral("unsaved: quitting"));
        switch (static_cast<Answer>(answer)) {
        case Answer::Cancel:
            QVERIFY(!closed);
            QVERIFY(w.isVisible());
            QVERIFY(wb->sanity().has_value());
            QVERIFY(wb->hasUnsavedWork());
            QCOMPARE(prompts->asked.size(), 1);
            QVERIFY(!QFileInfo::exists(saveAs));
            break;
        case Answer::Discard:
            QVERIFY(closed);
            QVERIFY(!w.isVisible());
            QCOMPARE(prompts->asked.size(), 1);
            QVERIFY(!QFileInfo::exists(saveAs));
            break;
        case Answer::Save:
            // The window stays until the session is written, then closes without asking again.
            QVERIFY(!closed);
            QVERIFY(saved.wait(kWorkbenchTimeoutMs));
            QTRY_VERIFY(!w.isVisible());
            QCOMPARE(prompts->asked, QStringList({QStringLiteral("unsaved: quitting"), QStringLiteral("save as: stories260K.h5")}));
            QVERIFY(QFileInfo(saveAs).size() > 0);
            break;
        }
    }

    void statusBarSaysTheSessionIsOpen()
    {
        // Issue 18: the status bar kept "Opening session…" after the session had opened (and after it had failed).
        MainWindow w(MainWindow::Options{false, false});
        promptedWindow(w);
        Workbench* wb = w.workbench();
        QVERIFY(openAnalysed(w, m_session));
        QCOMPARE(w.statusBar()->currentMessage(), QStringLiteral("Opening session: done"));

        // A file that is no session: the error names it, and nothing says it is still opening.
        const QString broken = scratchFolder("prompts_broken_session") + QStringLiteral("/broken.h5");
        QFile f(broken);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("not an HDF5 file");
        f.close();
        QSignalSpy errors(wb, &Workbench::errorOccurred);
        w.openPath(broken);
        QVERIFY(errors.wait(kWorkbenchTimeoutMs));
        QVERIFY(waitIdle(*wb));
        QVERIFY2(w.statusBar()->currentMessage().contains(QStringLiteral("broken.h5")), qPrintable(w.statusBar()->currentMessage()));
        QVERIFY(wb->analysis()); // the open session's analysis is kept
    }

    void sessionModelStillThere_data()
    {
        QTest::addColumn<bool>("open");
        QTest::newRow("open it") << true;
        QTest::newRow("ignore") << false;
    }

    void sessionModelStillThere()
    {
        QFETCH(bool, open);
        MainWindow w(MainWindow::Options{false, false});
        ScriptedPrompts* prompts = promptedWindow(w);
        prompts->openModel = open;
        Workbench* wb = w.workbench();
        QSignalSpy opened(wb, &Workbench::sessionOpened);
        w.openPath(m_session); // nothing open: the session comes without its model
        QVERIFY(opened.wait(kWorkbenchTimeoutMs));
        QCOMPARE(prompts->asked, QStringList({QStringLiteral("open model: ") + QFileInfo(demoPath()).absoluteFilePath()}));
        if (open) {
            // The model opens, then the session again on it (its analysis belongs to these weights).
            QVERIFY(opened.wait(kWorkbenchTimeoutMs));
            QVERIFY(waitIdle(*wb));
            QVERIFY(wb->hasModel());
            QCOMPARE(QFileInfo(wb->modelPath()).absoluteFilePath(), QFileInfo(demoPath()).absoluteFilePath());
            QVERIFY(wb->analysis());
        } else {
            QVERIFY(waitIdle(*wb));
            QVERIFY(!wb->hasModel());
            QVERIFY(wb->analysis()); // the preview works on the session alone
        }
        QCOMPARE(prompts->asked.size(), 1);
    }

    void locateMovedSessionModel_data()
    {
        QTest::addColumn<bool>("locate");
        QTest::newRow("located") << true;
        QTest::newRow("cancelled") << false;
    }

    void locateMovedSessionModel()
    {
        QFETCH(bool, locate);
        MainWindow w(MainWindow::Options{false, false});
        ScriptedPrompts* prompts = promptedWindow(w);
        prompts->locatedAs = locate ? m_movedModel : QString();
        Workbench* wb = w.workbench();
        QSignalSpy opened(wb, &Workbench::sessionOpened);
        QSignalSpy modelChanged(wb, &Workbench::modelChanged);
        w.openPath(m_movedSession);
        QVERIFY(opened.wait(kWorkbenchTimeoutMs));
        // Asked with the path the session stored, looking from the session's folder.
        QCOMPARE(prompts->asked, QStringList({QStringLiteral("locate: %1 from %2").arg(m_goneModel, QFileInfo(m_movedSession).absolutePath())}));
        QCOMPARE(opened.at(0).at(1).toString(), m_goneModel);
        const int modelChanges = modelChanged.count();
        if (locate) {
            // The located file opens and the session is reopened on it: model and analysis together, no more questions.
            QVERIFY(opened.wait(kWorkbenchTimeoutMs));
            QVERIFY(waitIdle(*wb));
            QCOMPARE(opened.last().at(1).toString(), QString());
            QVERIFY(wb->hasModel());
            QCOMPARE(wb->modelPath(), m_movedModel);
            QVERIFY(wb->analysis());
            QVERIFY(w.windowTitle().contains(QStringLiteral("moved.bin")));
            QCOMPARE(prompts->asked.size(), 1);
        } else {
            // As it was after opening the session: its analysis without weights, nothing loading.
            const QString title = w.windowTitle();
            QVERIFY(waitIdle(*wb));
            QCOMPARE(modelChanged.count(), modelChanges);
            QVERIFY(!wb->hasModel());
            QVERIFY(wb->analysis());
            QCOMPARE(w.windowTitle(), title);
            QCOMPARE(prompts->asked.size(), 1);
        }
    }
};

QTEST_MAIN(TestMainWindowPrompts)
#include "tst_main_window_prompts.moc"
