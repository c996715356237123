// The sanity view on models the demo does not cover (issue 18): xs260K, which has no tokenizer (the prompt is token
// ids, the check runs and shows ids, where it used to fail pointing at a CLI flag), and poem5L, whose vocabulary has
// no byte tokens (a prompt with an emoji becomes <unk>: warned as it is typed); the sampling controls reach the check.
#include "common/test_support.h"
#include "document/workbench.h"
#include "models/generation_model.h"
#include "panels/sanity_view.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTest>

using namespace mla;

namespace {
constexpr int kTimeout = 300000;

void open(Workbench& wb, const std::filesystem::path& path)
{
    QSignalSpy opened(&wb, &Workbench::modelChanged);
    wb.openModel(QString::fromStdString(path.string()));
    QVERIFY(opened.wait(kTimeout));
    QVERIFY(wb.hasModel());
}
} // namespace

class TestSanityView : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void withoutATokenizerThePromptIsTokenIds()
    {
        Workbench wb;
        SanityView view(&wb);
        QCOMPARE(view.promptModeCombo()->currentData().toBool(), false); // text before a model
        open(wb, test::modelsDir() / "xs260K" / "xs260K.bin");
        QVERIFY(!wb.model().tokenizer);
        // Switched to ids, text no longer selectable, and the default text prompt (not ids) dropped: start from BOS.
        QCOMPARE(view.promptModeCombo()->currentData().toBool(), true);
        auto* items = qobject_cast<QStandardItemModel*>(view.promptModeCombo()->model());
        QVERIFY(items && !items->item(0)->isEnabled());
        QCOMPARE(view.promptEdit()->text(), QString());
        QVERIFY(wb.sanityOptions().promptsAreIds);

        // Greedy was the only choice: now sampled, with a seed, and a shorter generation.
        view.temperatureSpin()->setValue(0.8);
        view.topPSpin()->setValue(0.5);
        view.seedSpin()->setValue(1234);
        view.stepsSpin()->setValue(24);
        QCOMPARE(wb.sanityOptions().temperature, 0.8f);
        QCOMPARE(wb.sanityOptions().topP, 0.5f);
        QCOMPARE(wb.sanityOptions().samplingSeed, std::uint64_t(1234));
        QCOMPARE(wb.sanityOptions().generationSteps, std::int64_t(24));

        ConversionSettings s = wb.settings();
        s.strategy = RopeStrategy::High; // no analysis needed
        s.activationAware = false;
        wb.changeSettings(s, QStringLiteral("quick"));
        wb.setAutoSanityCheck(false);
        QSignalSpy converted(&wb, &Workbench::conversionChanged);
        wb.convert();
        QVERIFY(converted.wait(kTimeout));
        QTRY_VERIFY_WITH_TIMEOUT(!wb.isBusy(), kTimeout);

        // An id outside the vocabulary is refused before any work, with the range.
        view.promptEdit()->setText(QStringLiteral("5 99999"));
        QVERIFY(!view.runButton()->isEnabled());
        QVERIFY2(view.statusText().contains(QStringLiteral("99999")), qPrintable(view.statusText()));
        view.promptEdit()->setText(QStringLiteral("5, 6 7"));
        QVERIFY2(view.runButton()->isEnabled(), qPrintable(view.statusText()));
        QSignalSpy checked(&wb, &Workbench::sanityChanged);
        QTest::mouseClick(view.runButton(), Qt::LeftButton);
        QVERIFY(checked.wait(kTimeout));
        QTRY_VERIFY_WITH_TIMEOUT(!wb.isBusy(), kTimeout);
        QVERIFY(wb.sanity().has_value());
        const GenerationComparison& g = wb.sanity()->generations.at(0);
        QCOMPARE(std::vector<int>(g.startIds.end() - 3, g.startIds.end()), (std::vector<int>{5, 6, 7}));
        QVERIFY(!g.originalIds.empty());
        QVERIFY(g.originalIds.size() <= 24 - g.startIds.size() + 1); // llama2.c steps: positions, the prompt included
        // Shown as ids.
        QCOMPARE(view.generationModel()->piece(0, false), QStringLiteral("[%1]").arg(g.originalIds[0]));
        QVERIFY(view.originalHtml().contains(QStringLiteral("[%1]").arg(g.originalIds[0])));
    }

    void unknownTokensInThePromptAreWarned()
    {
        Workbench wb;
        SanityView view(&wb);
        open(wb, test::modelsDir() / "poem5L" / "poem_model.bin");
        QVERIFY(wb.model().tokenizer);
        QCOMPARE(view.promptModeCombo()->currentData().toBool(), false);
        view.promptEdit()->setText(QStringLiteral("山"));
        QCOMPARE(view.promptWarning(), QString());
        view.promptEdit()->setText(QStringLiteral("山😀山😀"));
        QVERIFY2(view.promptWarning().contains(QStringLiteral("2 token(s) become <unk>")), qPrintable(view.promptWarning()));
        view.promptEdit()->setText(QStringLiteral("山"));
        QCOMPARE(view.promptWarning(), QString());
    }
};

QTEST_MAIN(TestSanityView)
#include "tst_sanity_view.moc"
