// The workbench document against the faults its two copies of every user action had: a device change during a job
// (the job keeps the backend it started with; the combo is disabled while it runs).

#include "common/recording_backend.h"
#include "common/test_support.h"
#include "document/workbench.h"
#include "panels/run_bar.h"

#include <QComboBox>
#include <QSignalSpy>
#include <QTest>
#include <QUndoStack>

#include <atomic>
#include <thread>

using namespace mla;
namespace fs = std::filesystem;

namespace {

constexpr int kTimeout = 120000;

QString demoPath()
{
    return QString::fromStdString((test::demoDir() / "stories260K.bin").string());
}

bool waitIdle(Workbench& wb)
{
    return QTest::qWaitFor([&] { return !wb.isBusy(); }, kTimeout);
}

bool openDemo(Workbench& wb, const QString& path = demoPath())
{
    wb.openModel(path);
    return QTest::qWaitFor([&] { return wb.hasModel() && !wb.isBusy(); }, kTimeout);
}

// Settings that convert the demo model without an analysis.
void plainSettings(Workbench& wb)
{
    ConversionSettings s = wb.settings();
    s.strategy = RopeStrategy::High;
    s.latentDim = 8;
    wb.changeSettings(s, QStringLiteral("test"));
}

} // namespace

class TestWorkbench : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { registerJobMetaTypes(); }

    void deviceChangeDuringAJobDoesNotAffectIt()
    {
        // The job starts on `chosen`, which holds it at its first call until the device has been changed. Declared
        // before the workbench: the job may still be waited for when the workbench goes.
        std::atomic<bool> entered{false}, release{false};
        auto chosen = std::make_shared<test::RecordingBackend>("chosen");
        auto other = std::make_shared<test::RecordingBackend>("other");
        chosen->beforeCall = [&] {
            entered = true;
            while (!release)
                std::this_thread::yield();
        };
        Workbench wb;
        RunBar bar(&wb);
        struct Release {
            std::atomic<bool>& flag;
            ~Release() { flag = true; }
        } releaseOnExit{release};
        QVERIFY(openDemo(wb));
        plainSettings(wb);
        wb.setAutoSanityCheck(false);
        wb.setBackend(chosen);
        wb.convert();
        QVERIFY(wb.isBusy());
        QVERIFY(QTest::qWaitFor([&] { return entered.load(); }, kTimeout));
        const bool comboEnabled = bar.deviceCombo()->isEnabled();
        wb.setBackend(other); // what a device change does (setDevice)
        release = true;
        QVERIFY(waitIdle(wb));
        QVERIFY(wb.conversion());
        QVERIFY(chosen->calls() > 0);
        QCOMPARE(other->calls(), std::int64_t(0));
        QVERIFY2(!comboEnabled, "the device combo was enabled while a job ran");
        QVERIFY(bar.deviceCombo()->isEnabled());
        // The next job runs on the new backend.
        release = true;
        wb.convert();
        QVERIFY(waitIdle(wb));
        QVERIFY(other->calls() > 0);
    }
};

QTEST_MAIN(TestWorkbench)
#include "tst_workbench.moc"
