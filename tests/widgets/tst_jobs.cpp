// The background jobs: progress with an ETA, typed results, failures with core's message, cancellation that leaves
// nothing behind (no result, no partial export folder), and superseded runs whose results are dropped.

#include "common/test_support.h"
#include "jobs/analysis_job.h"
#include "jobs/conversion_job.h"
#include "jobs/eta_estimator.h"
#include "jobs/export_job.h"
#include "jobs/gguf_export_job.h"
#include "jobs/heal_job.h"
#include "jobs/model_load_job.h"
#include "model/model_loader.h"
#include "pipeline/open_model.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QSignalSpy>
#include <QTest>

#include <atomic>
#include <filesystem>

using namespace mla;

namespace {

constexpr int kTimeout = 120000;

Settings quickAnalysis(RopeStrategy strategy)
{
    Settings o;
    o.calibration.samples = 2;
    o.calibration.sequenceLength = 32;
    o.conversion.strategy = strategy;
    return o;
}

} // namespace

class TestJobs : public QObject {
    Q_OBJECT
    OpenedModel m_demo;

private Q_SLOTS:
    void initTestCase()
    {
        registerJobMetaTypes();
        m_demo = pipeline::openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        QVERIFY(m_demo.model);
        QVERIFY(m_demo.tokenizer); // tok512.bin next to it
    }

    void etaEstimator()
    {
        EtaEstimator eta;
        QCOMPARE(eta.remainingSeconds(), -1.0);
        eta.update(0.1, 0.001);
        QCOMPARE(eta.remainingSeconds(), -1.0); // too early to say
        for (int i = 1; i <= 10; ++i)
            eta.update(i * 1.0, i * 0.05); // 5% per second
        QVERIFY(std::abs(eta.remainingSeconds() - 10.0) < 1.0);
        eta.update(11.0, 1.0);
        QCOMPARE(eta.remainingSeconds(), 0.0);
    }

    void loadFailureNamesTheFile()
    {
        const auto dir = test::scratchDir("load_failure");
        const auto bad = dir / "broken.gguf";
        test::writeTextFile(bad, "GGUF but not really");
        ModelLoadJob job;
        QSignalSpy failed(&job, &Job::failed);
        QSignalSpy loaded(&job, &ModelLoadJob::loaded);
        QSignalSpy finished(&job, &Job::finished);
        job.start(QString::fromStdString(bad.string()));
        QVERIFY(job.isRunning());
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(failed.count(), 1);
        QCOMPARE(loaded.count(), 0);
        QVERIFY2(failed.at(0).at(0).toString().contains(QStringLiteral("broken.gguf")), qPrintable(failed.at(0).at(0).toString()));
        QCOMPARE(job.lastOutcome(), Job::Outcome::Failed);
        QVERIFY(!job.isRunning());
    }

    void analysisReportsProgressAndResult()
    {
        AnalysisJob job;
        QSignalSpy started(&job, &Job::started);
        QSignalSpy progress(&job, &Job::progressChanged);
        QSignalSpy analysed(&job, &AnalysisJob::analysed);
        QSignalSpy finished(&job, &Job::finished);
        job.start(m_demo, quickAnalysis(RopeStrategy::TwoNorm));
        QCOMPARE(started.count(), 1);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(analysed.count(), 1);
        QCOMPARE(finished.count(), 1);
        QVERIFY(progress.count() >= 1);
        double last = -1.0;
        for (const auto& args : progress) {
            QVERIFY(args.at(0).toDouble() >= 0.0 && args.at(0).toDouble() <= 1.0);
            QVERIFY(!args.at(1).toString().isEmpty());
            last = args.at(0).toDouble();
        }
        QVERIFY(last > 0.5);
        const auto a = analysed.at(0).at(0).value<AnalysisPtr>();
        QVERIFY(a);
        QCOMPARE(static_cast<std::int64_t>(a->layers.size()), m_demo.model->config.layers);
    }

    void supersededRunIsDropped()
    {
        AnalysisJob job;
        QSignalSpy analysed(&job, &AnalysisJob::analysed);
        QSignalSpy cancelled(&job, &Job::cancelled);
        QSignalSpy finished(&job, &Job::finished);
        job.start(m_demo, quickAnalysis(RopeStrategy::High));
        job.start(m_demo, quickAnalysis(RopeStrategy::Low)); // supersedes the first
        QVERIFY(finished.wait(kTimeout));
        QTest::qWait(200); // anything the first run still posts must be dropped
        QCOMPARE(analysed.count(), 1);
        QCOMPARE(analysed.at(0).at(0).value<AnalysisPtr>()->settings.strategy, RopeStrategy::Low);
        QCOMPARE(finished.count(), 1);
        QCOMPARE(cancelled.count(), 0);
    }

    void cancelledConversionDeliversNothing()
    {
        ConversionJob job;
        std::atomic<int> reports{0};
        job.setWorkerProgressHook([&job, &reports](double, const std::string&) {
            if (++reports == 1)
                job.cancel(); // from the worker thread, at its first progress report
        });
        QSignalSpy converted(&job, &ConversionJob::converted);
        QSignalSpy cancelled(&job, &Job::cancelled);
        QSignalSpy finished(&job, &Job::finished);
        Settings s;
        s.conversion.strategy = RopeStrategy::High;
        s.conversion.latentDim = 8;
        job.start(m_demo, nullptr, s);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(cancelled.count(), 1);
        QCOMPARE(converted.count(), 0);
        QCOMPARE(job.lastOutcome(), Job::Outcome::Cancelled);
    }

    void healJobStopsKeepingOrDiscarding()
    {
        Settings s;
        s.conversion.latentDim = 16;
        const ConversionOutcome conversion = pipeline::convertInMemory(m_demo, nullptr, s, ExecutionContext());
        pipeline::HealRequest request;
        request.options.steps = 4;
        request.options.batchSequences = 2;
        request.options.data.tokens = 8 * 24;
        request.options.data.sequenceLength = 24;
        request.options.measureModel = false;
        for (const bool keep : {true, false}) {
            HealJob job;
            std::atomic<bool> stopped{false};
            job.setWorkerProgressHook([&job, &stopped, keep](double, const std::string& stage) {
                // From the worker, as layer 3 starts: layers 1 and 2 are finished.
                if (stage.rfind("healing layer 3/", 0) == 0 && !stopped.exchange(true)) {
                    if (keep)
                        job.stopKeepingHealed();
                    else
                        job.cancel();
                }
            });
            QSignalSpy stepped(&job, &HealJob::stepped);
            QSignalSpy healed(&job, &HealJob::healed);
            QSignalSpy cancelled(&job, &Job::cancelled);
            QSignalSpy finished(&job, &Job::finished);
            job.start(m_demo, conversion, request);
            QVERIFY(finished.wait(kTimeout));
            QVERIFY(stopped);
            QVERIFY(stepped.count() >= 2 * 5); // steps 0..4 of layers 1 and 2 at least
            const auto first = stepped.first().first().value<HealProgress>();
            QCOMPARE(first.layer, std::int64_t(0));
            QCOMPARE(first.step, std::int64_t(0));
            if (keep) {
                QCOMPARE(healed.count(), 1);
                QCOMPARE(cancelled.count(), 0);
                const auto outcome = healed.first().first().value<pipeline::HealedConversion>();
                QVERIFY(outcome.heal.healed.report.cancelled);
                QCOMPARE(outcome.heal.healed.report.layersHealed, std::int64_t(2));
                QVERIFY(outcome.conversion.heal && outcome.conversion.converted);
            } else {
                QCOMPARE(healed.count(), 0);
                QCOMPARE(cancelled.count(), 1);
                QCOMPARE(job.lastOutcome(), Job::Outcome::Cancelled);
            }
        }
    }

    void cancelledExportLeavesNoFolder()
    {
        Settings s;
        s.conversion.strategy = RopeStrategy::High;
        s.conversion.latentDim = 8;
        const ConversionOutcome converted = pipeline::convertInMemory(m_demo, nullptr, s, ExecutionContext());
        const auto dir = test::scratchDir("export_cancel");
        const QString folder = QString::fromStdString((dir / "cancelled-mla").string());

        ExportJob job;
        std::atomic<int> reports{0};
        job.setWorkerProgressHook([&job, &reports](double, const std::string&) {
            if (++reports == 2)
                job.cancel(); // part-way: some tensors are already written to the staging place
        });
        QSignalSpy exported(&job, &ExportJob::exported);
        QSignalSpy cancelled(&job, &Job::cancelled);
        QSignalSpy finished(&job, &Job::finished);
        job.start(m_demo, converted, folder);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(cancelled.count(), 1);
        QCOMPARE(exported.count(), 0);
        QVERIFY(reports >= 2);
        QVERIFY2(!std::filesystem::exists(folder.toStdString()), "a cancelled export left its folder");
        // Nothing else either: no staging folder left beside it.
        QCOMPARE(QDir(QString::fromStdString(dir.string())).entryList(QDir::NoDotAndDotDot | QDir::AllEntries | QDir::Hidden), QStringList());

        // The same export, not cancelled, writes a complete folder.
        ExportJob again;
        QSignalSpy done(&again, &ExportJob::exported);
        QSignalSpy finishedAgain(&again, &Job::finished);
        again.start(m_demo, converted, folder);
        QVERIFY(finishedAgain.wait(kTimeout));
        QCOMPARE(done.count(), 1);
        QVERIFY(std::filesystem::exists(std::filesystem::path(folder.toStdString()) / "config.json"));
    }

    // Export as GGUF: cancelled part-way it leaves nothing; a file that is not a GGUF of ours is replaced only with
    // overwrite, the refusal naming it; a DeepSeek-V3 conversion is written as deepseek2 and reads back as one.
    void ggufExportJob()
    {
        const auto dir = test::scratchDir("gguf_job");
        const QString file = QString::fromStdString((dir / "demo.gguf").string());
        GgufExportOptions options;
        options.file = file.toStdString();

        GgufExportJob cancelledJob;
        std::atomic<int> reports{0};
        cancelledJob.setWorkerProgressHook([&cancelledJob, &reports](double, const std::string&) {
            if (++reports == 2)
                cancelledJob.cancel();
        });
        QSignalSpy cancelled(&cancelledJob, &Job::cancelled);
        QSignalSpy cancelledDone(&cancelledJob, &Job::finished);
        cancelledJob.start(m_demo, options);
        QVERIFY(cancelledDone.wait(kTimeout));
        QCOMPARE(cancelled.count(), 1);
        QCOMPARE(QDir(QString::fromStdString(dir.string())).entryList(QDir::NoDotAndDotDot | QDir::AllEntries | QDir::Hidden), QStringList());

        {
            QFile other(file);
            QVERIFY(other.open(QIODevice::WriteOnly));
            other.write("not a model of ours");
        }
        GgufExportJob job;
        QSignalSpy failed(&job, &Job::failed);
        QSignalSpy exported(&job, &GgufExportJob::exported);
        QSignalSpy finished(&job, &Job::finished);
        job.start(m_demo, options);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(failed.count(), 1);
        QVERIFY2(failed.front().front().toString().contains(file), qPrintable(failed.front().front().toString()));
        QCOMPARE(QFileInfo(file).size(), qint64(19)); // untouched
        options.overwrite = true;
        job.start(m_demo, options);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(exported.count(), 1);
        const GgufExportReport original = exported.front().front().value<GgufExportReport>();
        QCOMPARE(original.architecture, std::string("llama"));
        QCOMPARE(original.bytesWritten, std::uint64_t(QFileInfo(file).size()));

        Settings s;
        s.calibration.samples = 2;
        s.calibration.sequenceLength = 32;
        s.conversion.target = ConversionTarget::DeepSeekV3;
        const ConversionOutcome converted = pipeline::convertInMemory(m_demo, nullptr, s, ExecutionContext());
        QVERIFY(converted.deepSeek && converted.plan.converted.deepseek);
        GgufExportOptions deepSeek;
        deepSeek.file = dir / "demo-deepseek2.gguf";
        job.start(m_demo, converted, deepSeek, std::nullopt);
        QVERIFY(finished.wait(kTimeout));
        QCOMPARE(exported.count(), 2);
        const GgufExportReport written = exported.back().front().value<GgufExportReport>();
        QCOMPARE(written.architecture, std::string("deepseek2"));
        const DeepSeekAttentionConfig& a = *converted.plan.converted.deepseek;
        QCOMPARE(written.kvValuesPerToken, (a.kvLoraRank + a.ropeDim) * m_demo.model->config.layers);
        const Model reloaded = loadModel(deepSeek.file);
        QVERIFY(reloaded.config.deepseek);
        QCOMPARE(reloaded.config.deepseek->kvLoraRank, a.kvLoraRank);
    }

    void destructorWaitsForWork()
    {
        // A job destroyed while running cancels and waits: nothing is delivered to a dead object.
        auto* job = new AnalysisJob;
        job->start(m_demo, quickAnalysis(RopeStrategy::TwoNorm));
        delete job;
        QTest::qWait(50);
    }
};

QTEST_MAIN(TestJobs)
#include "tst_jobs.moc"
