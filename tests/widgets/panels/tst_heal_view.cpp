// The Heal view's per-layer progress between heals (issue 18): it shows the heal of the current conversion or
// nothing, never one that is gone (after a DeepSeek-V3-target conversion, which has no heal, it still said "5 of 5
// layers healed" beside a text saying that target cannot be healed).
#include "common/test_support.h"
#include "common/workbench_fixtures.h"
#include "document/workbench.h"
#include "panels/heal_view.h"

#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTest>

using namespace mla;

namespace {

using test::waitIdle;

// Converts the demo model without an analysis (partial RoPE on the high pairs, latent 8) to `target`.
bool convertDemo(Workbench& wb, ConversionTarget target)
{
    wb.setTarget(target, false);
    wb.convert();
    return waitIdle(wb) && wb.conversion().has_value();
}

// A tiny heal of every layer through the view's settings and button.
bool healTiny(Workbench& wb, HealView& view)
{
    view.tokensSpin()->setValue(512);
    view.sequenceLengthSpin()->setValue(32);
    view.stepsSpin()->setValue(2);
    view.healButton()->click();
    return waitIdle(wb) && wb.heal().has_value() && !wb.heal()->report.cancelled;
}

bool showsNoHeal(const QProgressBar& bar)
{
    return bar.value() <= bar.minimum() && !bar.text().contains(QStringLiteral("layers healed")); // reset: below the minimum
}

} // namespace

class TestHealView : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { registerJobMetaTypes(); }

    void progressFollowsTheCurrentConversion()
    {
        Workbench wb;
        wb.setAutoSanityCheck(false);
        HealView view(&wb);
        QProgressBar* bar = view.layerProgress();
        QVERIFY(showsNoHeal(*bar)); // no model
        wb.openModel(test::demoPath());
        QVERIFY(QTest::qWaitFor([&] { return wb.hasModel() && !wb.isBusy(); }, test::kWorkbenchTimeoutMs));
        ConversionSettings s = wb.settings();
        s.strategy = RopeStrategy::High;
        s.latentDim = 8;
        wb.changeSettings(s, QStringLiteral("test"));
        const int layers = static_cast<int>(wb.config()->layers);

        QVERIFY(convertDemo(wb, ConversionTarget::Mha2mla));
        QVERIFY(view.healButton()->isEnabled());
        QVERIFY(showsNoHeal(*bar)); // converted, not healed yet
        QVERIFY(healTiny(wb, view));
        QCOMPARE(bar->value(), bar->maximum());
        QCOMPARE(bar->text(), QStringLiteral("%1 of %1 layers healed").arg(layers));

        // The DeepSeek-V3 target: its conversion has no heal; the text says so, and so does the bar.
        QVERIFY(convertDemo(wb, ConversionTarget::DeepSeekV3));
        QVERIFY(!wb.healUnavailableReason().isEmpty());
        QVERIFY(!view.healButton()->isEnabled());
        QCOMPARE(view.statusText(), wb.healUnavailableReason());
        QVERIFY2(showsNoHeal(*bar), qPrintable(bar->text()));
        QCOMPARE(bar->text(), QStringLiteral("no heal for this conversion"));

        // Healed again on the MHA2MLA target, then the model is opened anew: its heal is gone, and from the bar.
        QVERIFY(convertDemo(wb, ConversionTarget::Mha2mla));
        QVERIFY2(showsNoHeal(*bar), qPrintable(bar->text()));
        QVERIFY(healTiny(wb, view));
        QCOMPARE(bar->value(), bar->maximum());
        QSignalSpy modelChanged(&wb, &Workbench::modelChanged);
        wb.openModel(test::demoPath());
        QVERIFY(modelChanged.wait(test::kWorkbenchTimeoutMs));
        QVERIFY(waitIdle(wb));
        QVERIFY(!wb.heal());
        QVERIFY2(showsNoHeal(*bar), qPrintable(bar->text()));
        QCOMPARE(bar->text(), QStringLiteral("not healed"));
    }
};

QTEST_MAIN(TestHealView)
#include "tst_heal_view.moc"
