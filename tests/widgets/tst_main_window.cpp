// The window: its title, opening by path and by drag and drop, clear error dialogs with core's message for broken
// checkpoints, shortcuts, settings kept in QSettings, and the actions' enabled state through a run.

#include "common/test_support.h"
#include "common/workbench_fixtures.h"
#include "document/settings_store.h"
#include "document/workbench.h"
#include "main_window.h"
#include "panels/settings_panel.h"
#include "plots/plot_widget.h"

#include <QAction>
#include <QDir>
#include <QGuiApplication>
#include <QScreen>
#include <QMessageBox>
#include <QMimeData>
#include <QSet>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTabWidget>
#include <QTest>

using namespace mla;

namespace {

constexpr int kTimeout = 300000;

using test::demoPath;

QAction* findAction(const MainWindow& w, const QKeySequence& key)
{
    for (QAction* a : w.workbenchActions()) {
        if (a->shortcuts().contains(key))
            return a;
    }
    return nullptr;
}

} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        // Settings go to a scratch folder, never the user's.
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString(test::scratchDir("settings").string()));
        QCoreApplication::setOrganizationName(QStringLiteral("mla-workbench-tests"));
    }

    void titleAndOpening()
    {
        MainWindow w(MainWindow::Options{false, true});
        w.show();
        QCOMPARE(w.windowTitle(), QStringLiteral("MLA Workbench"));
        QSignalSpy opened(w.workbench(), &Workbench::modelChanged);
        w.openPath(demoPath());
        QVERIFY(opened.wait(kTimeout));
        QCOMPARE(w.windowTitle(), QStringLiteral("MLA Workbench \u2014 stories260K.bin"));
        QCOMPARE(w.tabs()->count(), 5); // RoPE, spectra, preview, sanity check, heal
        // Every plot kind is in the window (heatmap, spectra, error bars, memory curves), each a PlotWidget with the
        // one export path.
        QSet<QString> kinds;
        for (PlotWidget* p : w.plots())
            kinds.insert(QString::fromLatin1(p->metaObject()->className()));
        for (const char* kind : {"mla::HeatmapPlot", "mla::SpectrumPlot", "mla::BarPlot", "mla::MemoryPlot"})
            QVERIFY2(kinds.contains(QString::fromLatin1(kind)), kind);
    }

    void brokenCheckpointShowsCoresMessage_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QByteArray>("content");
        QTest::newRow("safetensors") << QStringLiteral("broken.safetensors") << QByteArray("\x08\x00\x00\x00\x00\x00\x00\x00{]", 10);
        QTest::newRow("gguf") << QStringLiteral("broken.gguf") << QByteArray("GGUF\x03\x00");
        QTest::newRow("llama2c") << QStringLiteral("broken.bin") << QByteArray("\x01\x02\x03");
        QTest::newRow("folder") << QStringLiteral("emptyfolder") << QByteArray();
    }

    void brokenCheckpointShowsCoresMessage()
    {
        QFETCH(QString, name);
        QFETCH(QByteArray, content);
        const QString dir = QString::fromStdString(test::scratchDir((QStringLiteral("broken_") + name).toStdString()).string());
        const QString path = QDir(dir).filePath(name);
        if (content.isEmpty()) {
            QDir(dir).mkdir(name);
        } else {
            QFile f(path);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(content);
        }
        MainWindow w(MainWindow::Options{false, true});
        w.show();
        QSignalSpy opened(w.workbench(), &Workbench::modelChanged);
        w.openPath(demoPath());
        QVERIFY(opened.wait(kTimeout));
        QSignalSpy error(w.workbench(), &Workbench::errorOccurred);
        w.openPath(path);
        QVERIFY(error.wait(kTimeout));
        QVERIFY2(w.lastError().contains(name), qPrintable(w.lastError()));
        QVERIFY(w.lastError().startsWith(QStringLiteral("Cannot open the model")));
        QMessageBox* box = w.errorDialog();
        QVERIFY(box);
        QVERIFY(box->isVisible());
        QCOMPARE(box->icon(), QMessageBox::Critical);
        QVERIFY(box->informativeText().contains(name));
        box->close();
        // The open model is untouched.
        QCOMPARE(w.windowTitle(), QStringLiteral("MLA Workbench \u2014 stories260K.bin"));
        QVERIFY(w.workbench()->hasModel());
    }

    void dragAndDrop()
    {
        MainWindow w(MainWindow::Options{false, false});
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(demoPath())});
        QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&w, &enter);
        QVERIFY(enter.isAccepted());
        QSignalSpy opened(w.workbench(), &Workbench::modelChanged);
        QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&w, &drop);
        QVERIFY(opened.wait(kTimeout));
        QVERIFY(w.workbench()->hasModel());

        QMimeData text;
        text.setUrls({QUrl::fromLocalFile(QStringLiteral("/tmp/notes.txt"))});
        QDragEnterEvent refuse(QPoint(10, 10), Qt::CopyAction, &text, Qt::LeftButton, Qt::NoModifier);
        refuse.setAccepted(false);
        QApplication::sendEvent(&w, &refuse);
        QVERIFY(!refuse.isAccepted());
    }

    void shortcutsAndActions()
    {
        MainWindow w(MainWindow::Options{false, false});
        w.show();
        for (const QKeySequence& key : {QKeySequence(QKeySequence::Open), QKeySequence(QKeySequence::Save), QKeySequence(Qt::CTRL | Qt::Key_E),
                                        QKeySequence(Qt::Key_F5), QKeySequence(QKeySequence::Undo), QKeySequence(Qt::Key_Escape)})
            QVERIFY2(findAction(w, key), qPrintable(key.toString()));
        QAction* analyze = findAction(w, QKeySequence(Qt::Key_F5));
        QAction* exportAction = findAction(w, QKeySequence(Qt::CTRL | Qt::Key_E));
        QAction* ggufAction = findAction(w, QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
        QVERIFY(ggufAction && ggufAction == w.exportGgufAction());
        QVERIFY(!analyze->isEnabled()); // nothing open
        QVERIFY(!ggufAction->isEnabled());
        QSignalSpy opened(w.workbench(), &Workbench::modelChanged);
        w.openDemo();
        QVERIFY(opened.wait(kTimeout));
        QVERIFY(analyze->isEnabled());
        QVERIFY(!exportAction->isEnabled()); // nothing converted
        QVERIFY(ggufAction->isEnabled());     // the opened model as it is
        QVERIFY(w.ggufExportDescription().contains(QStringLiteral("opened model as it is")));
        // F5 analyses.
        QSignalSpy analysed(w.workbench(), &Workbench::analysisChanged);
        analyze->trigger();
        QVERIFY(!analyze->isEnabled());
        QVERIFY(analysed.wait(kTimeout));
        QTRY_VERIFY(analyze->isEnabled());
        // Undo / redo of a settings change through the menu actions.
        QAction* undo = findAction(w, QKeySequence(QKeySequence::Undo));
        w.settingsPanel()->latentSpin()->setValue(9);
        QCOMPARE(w.workbench()->resolvedLatent(), 9);
        QVERIFY(undo->isEnabled());
        undo->trigger();
        QVERIFY(w.workbench()->resolvedLatent() != 9);
        // Ctrl+2 shows the spectra.
        w.showTab(MainWindow::SpectraTab);
        QCOMPARE(w.tabs()->currentIndex(), 1);
    }

    void settingsAreKept()
    {
        {
            MainWindow w(MainWindow::Options{true, false});
            w.show();
            QSignalSpy opened(w.workbench(), &Workbench::modelChanged);
            w.openDemo();
            QVERIFY(opened.wait(kTimeout));
            ConversionSettings s = w.workbench()->settings();
            s.strategy = RopeStrategy::Uniform;
            s.method = LatentMethod::Split;
            s.sigma = SigmaPlacement::Sqrt;
            w.workbench()->changeSettings(s, QStringLiteral("test"));
            w.workbench()->setTargetSaving(0.8);
            w.workbench()->setContextLength(16384);
            w.tabs()->setCurrentIndex(2);
            w.resize(1111, 777); // larger than the 800x800 test screen: restored shrunk to fit it
            w.close();
        }
        MainWindow again(MainWindow::Options{true, false});
        QCOMPARE(again.workbench()->settings().strategy, RopeStrategy::Uniform);
        QCOMPARE(again.workbench()->settings().method, LatentMethod::Split);
        QCOMPARE(again.workbench()->settings().sigma, SigmaPlacement::Sqrt);
        QCOMPARE(again.workbench()->settings().targetSaving, 0.8);
        QCOMPARE(again.workbench()->contextLength(), 16384);
        QCOMPARE(again.tabs()->currentIndex(), 2);
        const QRect screen = QGuiApplication::primaryScreen()->availableGeometry();
        const QSize expected = QSize(1111, 777).boundedTo(screen.size());
        QVERIFY2(again.size() == expected,
                 qPrintable(QStringLiteral("restored %1,%2 %3x%4 (frame %5,%6), expected %7x%8 on a %9x%10 screen")
                                .arg(again.x())
                                .arg(again.y())
                                .arg(again.width())
                                .arg(again.height())
                                .arg(again.frameGeometry().x())
                                .arg(again.frameGeometry().y())
                                .arg(expected.width())
                                .arg(expected.height())
                                .arg(screen.width())
                                .arg(screen.height())));
        QVERIFY(QSettings().value(QStringLiteral("recentFiles")).toStringList().contains(demoPath()));
    }

    void settingsStoreRoundTrip()
    {
        Settings a;
        a.conversion.strategy = RopeStrategy::RotationLoss;
        a.conversion.method = LatentMethod::Key;
        a.conversion.targetSaving = 0.6;
        a.conversion.refit = true;
        a.conversion.preset = "best";
        a.calibration.source = CalibrationOptions::Source::Text;
        a.calibration.file = "/tmp/calibration.txt";
        a.calibration.samples = 12;
        Settings b;
        settingsFromVariant(settingsToVariant(a), b);
        QCOMPARE(b.conversion.strategy, a.conversion.strategy);
        QCOMPARE(b.conversion.method, a.conversion.method);
        QCOMPARE(b.conversion.targetSaving, 0.6);
        QVERIFY(b.conversion.refit);
        QCOMPARE(b.conversion.preset, std::string("best"));
        QCOMPARE(b.calibration.source, CalibrationOptions::Source::Text);
        QCOMPARE(b.calibration.file, a.calibration.file);
        QCOMPARE(b.calibration.samples, 12);
        // Garbage is ignored, not applied.
        Settings c;
        settingsFromVariant({{QStringLiteral("strategy"), QStringLiteral("sideways")}, {QStringLiteral("targetSaving"), 7.0}}, c);
        QCOMPARE(c.conversion.strategy, RopeStrategy::TwoNorm);
        QCOMPARE(c.conversion.targetSaving, 0.75);
    }
};

QTEST_MAIN(TestMainWindow)
#include "tst_main_window.moc"
