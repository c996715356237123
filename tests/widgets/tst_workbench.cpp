// The workbench document against the faults its two copies of every user action had: a device change during a job
// (the job keeps the backend it started with; the combo is disabled while it runs), the model card of a GUI export,
// per-layer widths after a session is reopened and edited, a late allocation result for a model that was closed, and
// a tokenizer larger than the vocabulary (one rule, the CLI's, in pipeline::openModel); and the DeepSeek-V3 target
// (converted without an analysis, heal refused, GGUF export of the conversion, kept by a session).

#include "common/recording_backend.h"
#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "common/workbench_fixtures.h"
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

using test::demoPath;

using test::waitIdle;

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

    void guiExportWritesTheModelCard()
    {
        Workbench wb;
        QVERIFY(openDemo(wb));
        plainSettings(wb);
        wb.setAutoSanityCheck(false);
        wb.convert();
        QVERIFY(waitIdle(wb) && wb.conversion());
        const fs::path folder = test::scratchDir("gui_export") / "mla";
        QSignalSpy exported(&wb, &Workbench::exported);
        wb.exportTo(QString::fromStdString(folder.string()));
        QVERIFY(waitIdle(wb));
        QCOMPARE(exported.count(), 1);
        QVERIFY2(fs::exists(folder / "README.md"), "the GUI export wrote no model card");
        const std::string card = test::readTextFile(folder / "README.md");
        QVERIFY(card.find("with Multi-head Latent Attention") != std::string::npos);
        QVERIFY(card.find("stories260K.bin") != std::string::npos);
    }

    void reopenedSessionKeepsPerLayerWidths()
    {
        const fs::path file = test::scratchDir("session_widths") / "widths.h5";
        {
            Workbench wb;
            wb.setAnalysisOnly(std::make_shared<const AnalysisResult>(test::syntheticAnalysis(test::sixLayerShape())), 5000000);
            wb.setGlobalLatent(40);
            wb.setLayerLatent(2, 10);
            QCOMPARE(wb.preview().layers[2].latentK, 10);
            QSignalSpy saved(&wb, &Workbench::sessionSaved);
            wb.saveSession(QString::fromStdString(file.string()));
            QVERIFY(waitIdle(wb));
            QCOMPARE(saved.count(), 1);
        }
        Workbench wb;
        wb.openSession(QString::fromStdString(file.string()));
        QVERIFY(QTest::qWaitFor([&] { return wb.analysis() && !wb.isBusy(); }, kTimeout));
        QCOMPARE(wb.preview().layers[2].latentK, 10);
        QCOMPARE(wb.preview().layers[0].latentK, 40);
        // An unrelated edit keeps the hand-set width, and the layer is still locked.
        ConversionSettings s = wb.settings();
        s.sigma = SigmaPlacement::Sqrt;
        wb.changeSettings(s, QStringLiteral("sigma"));
        QCOMPARE(wb.preview().layers[2].latentK, 10);
        QCOMPARE(wb.preview().layers[0].latentK, 40);
        wb.setGlobalLatent(50);
        QCOMPARE(wb.preview().layers[2].latentK, 10);
        QCOMPARE(wb.preview().layers[0].latentK, 50);
    }

    // The DeepSeek-V3 target in the document: Convert needs no analysis (the conversion calibrates), Heal is refused
    // with the reason, Export as GGUF writes the conversion as deepseek2 (an mha2mla one would write the original).
    void deepSeekConversionHealRefusedGgufExport()
    {
        Workbench wb;
        QVERIFY(openDemo(wb));
        wb.setAutoSanityCheck(false);
        CalibrationOptions calibration = wb.calibration();
        calibration.samples = 2;
        calibration.sequenceLength = 32;
        wb.changeCalibration(calibration, QStringLiteral("small"));
        wb.setTarget(ConversionTarget::DeepSeekV3, false);
        QVERIFY(wb.deepSeekTarget() && wb.deepSeekWidths());
        QVERIFY(!wb.ggufExportsConversion()); // nothing converted yet: the original would be written
        QSignalSpy errors(&wb, &Workbench::errorOccurred);
        wb.convert();
        QVERIFY(waitIdle(wb));
        QVERIFY2(errors.isEmpty(), errors.isEmpty() ? "" : qPrintable(errors.front().at(1).toString()));
        QVERIFY(wb.conversionIsDeepSeek() && wb.ggufExportsConversion());
        QVERIFY(wb.conversion()->plan.converted.deepseek && !wb.conversion()->plan.converted.mla);
        QVERIFY(wb.healUnavailableReason().contains(QStringLiteral("DeepSeek-V3")));
        wb.healConversion();
        QCOMPARE(errors.count(), 1);
        QVERIFY(!wb.isBusy());

        const fs::path file = test::scratchDir("workbench_gguf") / "demo-deepseek2.gguf";
        QSignalSpy exported(&wb, &Workbench::ggufExported);
        wb.exportGgufTo(QString::fromStdString(file.string()), GgmlType::F16, QStringLiteral("demo"));
        QVERIFY(waitIdle(wb));
        QCOMPARE(exported.count(), 1);
        const GgufExportReport r = exported.front().front().value<GgufExportReport>();
        QCOMPARE(r.architecture, std::string("deepseek2"));
        QCOMPARE(r.weights, GgmlType::F16);
        QCOMPARE(wb.lastGgufExport(), QString::fromStdString(file.string()));
        QVERIFY(Workbench::ggufReportText(r).contains(QStringLiteral("llama-cli -m ")));
    }

    void sessionKeepsTheDeepSeekTarget()
    {
        const fs::path file = test::scratchDir("session_target") / "target.h5";
        {
            Workbench wb;
            wb.setAnalysisOnly(std::make_shared<const AnalysisResult>(test::syntheticAnalysis(test::sixLayerShape())), 5000000);
            wb.setTarget(ConversionTarget::DeepSeekV3, false);
            QSignalSpy saved(&wb, &Workbench::sessionSaved);
            wb.saveSession(QString::fromStdString(file.string()));
            QVERIFY(waitIdle(wb));
            QCOMPARE(saved.count(), 1);
        }
        Workbench wb;
        wb.openSession(QString::fromStdString(file.string()));
        QVERIFY(QTest::qWaitFor([&] { return wb.analysis() && !wb.isBusy(); }, kTimeout));
        QVERIFY(wb.deepSeekTarget());
        QVERIFY(wb.deepSeekWidths());
        QCOMPARE(wb.preview().kv.convertedTotal, 64 * test::sixLayerShape().layers); // 75% of 256 per layer
    }

    void lateAllocationForAClosedModelIsDropped()
    {
        Workbench wb;
        QVERIFY(openDemo(wb));
        CalibrationOptions quick = wb.calibration();
        quick.samples = 2;
        quick.sequenceLength = 32;
        wb.changeCalibration(quick, QStringLiteral("quick"));
        wb.analyze();
        QVERIFY(QTest::qWaitFor([&] { return wb.analysis() && !wb.isBusy(); }, kTimeout));
        wb.allocate();
        QVERIFY(wb.isBusy());
        // Another model is opened before the allocation delivers (a session without its model, 6 layers; the demo
        // has 5).
        wb.setAnalysisOnly(std::make_shared<const AnalysisResult>(test::syntheticAnalysis(test::sixLayerShape())), 5000000);
        QVERIFY(waitIdle(wb));
        QTest::qWait(100);
        QVERIFY(wb.settings().latentPerLayer.empty());
        QVERIFY(wb.settings().ropePairsPerLayer.empty());
        QVERIFY2(wb.preview().problem.empty(), wb.preview().problem.c_str());
        QCOMPARE(wb.undoStack()->count(), 0);
    }

    void tokenizerLargerThanTheVocabularyIsOneRule()
    {
        // A model folder whose tokenizer (2048 tokens) does not fit the model (512 ids).
        const fs::path dir = test::scratchDir("tokenizer_rule");
        fs::copy_file(test::demoDir() / "stories260K.bin", dir / "stories260K.bin");
        fs::copy_file(test::modelsDir() / "poem5L" / "poem_tok.bin", dir / "tokenizer.bin");
        const std::string model = (dir / "stories260K.bin").string();
        const test::ProcessResult cli = test::runCli({"info", model});
        QCOMPARE(cli.exitCode, 1);
        const std::string expected = "tokenizer has 2048 tokens, more than the model's vocabulary of 512";
        QVERIFY2(cli.err.find(expected) != std::string::npos, cli.err.c_str());

        Workbench wb;
        QSignalSpy errors(&wb, &Workbench::errorOccurred);
        wb.openModel(QString::fromStdString(model));
        QVERIFY(waitIdle(wb));
        QVERIFY2(!wb.hasModel(), "the workbench opened a model whose tokenizer does not fit it");
        QCOMPARE(errors.count(), 1);
        const QString message = errors.at(0).at(1).toString();
        QVERIFY2(message.contains(QString::fromStdString(expected)), qPrintable(message));
        QVERIFY2(message.contains(QString::fromStdString((dir / "tokenizer.bin").string())), qPrintable(message));
    }
};

QTEST_MAIN(TestWorkbench)
#include "tst_workbench.moc"
