// The preview's "compare with a preset" against the fault a tour found: the bars of preset best were the current ones
// (best allocates per layer; the closed form ignored that and showed one width for every layer). Now best's bars are
// those of its measured allocation, or a note says why there are none, or that the current settings are best's.

#include "common/test_support.h"
#include "common/workbench_fixtures.h"
#include "document/workbench.h"
#include "main_window.h"
#include "panels/preview_view.h"
#include "plots/bar_plot.h"
#include "conversion/presets.h"
#include "settings/preset_comparison.h"
#include "settings/settings_rules.h"

#include <QComboBox>
#include <QPushButton>
#include <QSettings>
#include <QTest>

using namespace mla;

namespace {

constexpr int kTimeout = 120000;

using test::demoPath;

using test::waitIdle;

void chooseCompare(PreviewView* v, const QString& preset)
{
    QComboBox* c = v->compareCombo();
    c->setCurrentIndex(c->findData(preset));
}

} // namespace

class TestPreviewView : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString(test::scratchDir("preview_view_settings").string()));
    }

    void compareWithBestShowsItsMeasuredAllocation()
    {
        MainWindow w(MainWindow::Options{false, false});
        Workbench* wb = w.workbench();
        wb->openModel(demoPath());
        QVERIFY(QTest::qWaitFor([&] { return wb->hasModel() && !wb->isBusy(); }, kTimeout));
        CalibrationOptions calibration = wb->calibration(); // small: the test is about what is shown
        calibration.samples = 2;
        calibration.sequenceLength = 32;
        wb->changeCalibration(calibration, QStringLiteral("test"));
        ConversionSettings paper = wb->settings();
        applyPreset("paper", paper);
        paper.activationAware = true; // the activation errors, as best's
        wb->changeSettings(paper, QStringLiteral("test"));
        wb->analyze();
        QVERIFY(waitIdle(*wb) && wb->analysis());

        PreviewView* v = w.previewView();
        chooseCompare(v, QStringLiteral("best"));
        // Not measured yet: no bars that would only copy the current widths, a note and the button to measure.
        QCOMPARE(v->errorPlot()->series().size(), qsizetype(2));
        QVERIFY2(v->comparisonText().contains(QStringLiteral("measure")), qPrintable(v->comparisonText()));
        QVERIFY(!v->measureButton()->isHidden());
        QTest::mouseClick(v->measureButton(), Qt::LeftButton);
        QVERIFY(waitIdle(*wb));
        const Allocation* a = wb->presetAllocation("best");
        QVERIFY(a);
        QCOMPARE(v->errorPlot()->series().size(), qsizetype(3));
        // Best's bars are its allocation's: the preview of best's settings with those per-layer widths, not the
        // current ones (the demo's allocation gives the layers different widths).
        const PresetComparison cmp = comparePreset(*wb->analysis(), wb->snapshot(), "best", a, wb->parameterCount());
        QVERIFY(!cmp.sameAsCurrent && !cmp.allocationMissing);
        QCOMPARE(cmp.settings.conversion.latentPerLayer, a->latent);
        const std::vector<double> best = v->errorPlot()->series()[2].values;
        QCOMPARE(best.size(), cmp.preview.layers.size());
        for (std::size_t l = 0; l < best.size(); ++l)
            QCOMPARE(best[l], cmp.preview.layers[l].activationError);
        QVERIFY2(best != v->errorPlot()->series()[1].values, "best's bars equal the current activation errors");
        QVERIFY(v->measureButton()->isHidden());

        // The current settings made best's (the same recipe, then its allocation): a note says the bars are the same.
        ConversionSettings best2 = wb->settings();
        applyPreset("best", best2);
        wb->changeSettings(best2, QStringLiteral("best"));
        wb->allocate();
        QVERIFY(waitIdle(*wb));
        QVERIFY(!wb->settings().latentPerLayer.empty());
        chooseCompare(v, QStringLiteral("best"));
        v->refresh();
        if (!wb->presetAllocation("best")) { // measured for the earlier settings: measure again for these
            QTest::mouseClick(v->measureButton(), Qt::LeftButton);
            QVERIFY(waitIdle(*wb));
        }
        QVERIFY2(v->comparisonText().contains(QStringLiteral("are preset best's")), qPrintable(v->comparisonText()));
        QCOMPARE(v->errorPlot()->series().size(), qsizetype(2));
    }
};

QTEST_MAIN(TestPreviewView)
#include "tst_preview_view.moc"
