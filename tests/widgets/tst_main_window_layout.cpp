// The window's layout from 1280 x 720 up: every tab fits, nothing visible is squeezed below its minimum size, the
// "How it works" panel keeps room for whole words, View > Reset Layout brings the docks back, and a saved geometry that
// is off every screen is not used.

#include "common/test_support.h"
#include "common/workbench_fixtures.h"
#include "document/workbench.h"
#include "main_window.h"
#include "panels/explainer_panel.h"
#include "self_test.h"

#include <QAction>
#include <QApplication>
#include <QDockWidget>
#include <QScreen>
#include <QSettings>
#include <QTabWidget>
#include <QTest>

using namespace mla;

namespace {

using test::demoPath;

} // namespace

class TestMainWindowLayout : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString(test::scratchDir("layout_settings").string()));
    }

    void everyTabFitsA1280x720Window()
    {
        MainWindow w(MainWindow::Options{false, false});
        w.resize(1280, 720);
        w.show();
        Workbench* wb = w.workbench();
        wb->openModel(demoPath());
        QVERIFY(QTest::qWaitFor([&] { return wb->hasModel() && !wb->isBusy(); }, 120000));
        for (int tab = 0; tab < w.tabs()->count(); ++tab) {
            w.showTab(tab);
            SelfTest::settleLayouts();
            QVERIFY2(w.minimumSizeHint().width() <= 1280,
                     qPrintable(QStringLiteral("tab %1 needs %2 px").arg(tab).arg(w.minimumSizeHint().width())));
            QVERIFY2(w.minimumSizeHint().height() <= 720,
                     qPrintable(QStringLiteral("tab %1 needs %2 px high").arg(tab).arg(w.minimumSizeHint().height())));
            QCOMPARE(w.size(), QSize(1280, 720));
            const QStringList bad = SelfTest::squeezedWidgets(&w);
            QVERIFY2(bad.isEmpty(), qPrintable(bad.join(QStringLiteral("; "))));
        }
    }

    void explainerKeepsRoomForWords()
    {
        MainWindow w(MainWindow::Options{false, false});
        // About 26 characters: a long word of the text ("decomposition", "approximation") always fits a line.
        QVERIFY(w.explainer()->minimumWidth() >= w.explainer()->fontMetrics().horizontalAdvance(QStringLiteral("approximations, decomposition")) * 0.8);
    }

    void resetLayoutBringsTheDocksBack()
    {
        MainWindow w(MainWindow::Options{false, false});
        w.show();
        auto* dock = w.findChild<QDockWidget*>(QStringLiteral("ExplainerDock"));
        QVERIFY(dock);
        dock->hide();
        w.findChild<QDockWidget*>(QStringLiteral("SettingsDock"))->setFloating(true);
        w.resize(600, 400);
        QVERIFY(w.resetLayoutAction());
        w.resetLayoutAction()->trigger();
        QApplication::processEvents();
        QVERIFY(dock->isVisible());
        QVERIFY(!w.findChild<QDockWidget*>(QStringLiteral("SettingsDock"))->isFloating());
        QCOMPARE(w.size(), w.defaultSize().expandedTo(w.minimumSizeHint())); // the test screen is smaller than the window's minimum
    }

    void savedGeometryOffTheScreensIsNotUsed()
    {
        const QRect screen = QGuiApplication::primaryScreen()->availableGeometry();
        QVERIFY(MainWindow::geometryFitsAScreen(QRect(screen.topLeft() + QPoint(10, 10), QSize(800, 600)).intersected(screen)));
        QVERIFY(!MainWindow::geometryFitsAScreen(QRect(screen.right() + 500, screen.bottom() + 500, 800, 600)));
        QVERIFY(!MainWindow::geometryFitsAScreen(QRect(screen.left() - 2000, screen.top(), 800, 600)));
    }
};

QTEST_MAIN(TestMainWindowLayout)
#include "tst_main_window_layout.moc"
