// pipeline::exportGguf, what `export --format gguf` calls: it writes the same file as the format's own exporter given
// the tokenizer the model was opened with (one tokenizer rule), computes nothing on its context's backend, reports
// progress through the context and stops, writing nothing, when the job is cancelled.
#include "common/recording_backend.h"
#include "common/test_support.h"
#include "pipeline/export_gguf.h"
#include "util/error.h"

#include <QtTest>

#include <atomic>

using namespace mla;
namespace fs = std::filesystem;

class TestExportGguf : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void sameFileAsTheFormatsExporter()
    {
        const fs::path dir = test::scratchDir("same");
        const pipeline::OpenedModel opened =
            pipeline::openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        QVERIFY(opened.model && !opened.tokenizerSource.empty());

        auto recording = std::make_shared<test::RecordingBackend>();
        std::atomic<int> reports{0};
        const JobControl job(nullptr, [&](double, const std::string&) { ++reports; });
        GgufExportOptions options;
        fs::create_directories(dir / "pipeline");
        options.file = dir / "pipeline" / "demo.gguf";
        options.name = "demo";
        const GgufExportReport viaPipeline = pipeline::exportGguf(opened, options, ExecutionContext(recording, job));
        QCOMPARE(recording->calls(), std::int64_t(0));
        QVERIFY(reports.load() > 0);
        QVERIFY2(viaPipeline.tokenizer.find(fs::path(opened.tokenizerSource).filename().string()) != std::string::npos,
                 viaPipeline.tokenizer.c_str());

        fs::create_directories(dir / "direct");
        options.file = dir / "direct" / "demo.gguf"; // the same name: the model card quotes it
        options.tokenizerFile = opened.tokenizerSource;
        const GgufExportReport direct = exportGguf(*opened.model, options);
        QCOMPARE(viaPipeline.bytesWritten, direct.bytesWritten);
        QCOMPARE(test::readTextFile(dir / "pipeline" / "demo.gguf"), test::readTextFile(dir / "direct" / "demo.gguf"));
    }

    void cancelledWritesNothing()
    {
        const fs::path dir = test::scratchDir("cancel");
        const pipeline::OpenedModel opened =
            pipeline::openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        const std::atomic<bool> cancel{true};
        const JobControl job(&cancel, nullptr);
        GgufExportOptions options;
        options.file = dir / "x.gguf";
        bool cancelled = false;
        try {
            pipeline::exportGguf(opened, options, ExecutionContext(nullptr, job));
        } catch (const Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QVERIFY(!fs::exists(options.file));
        QCOMPARE(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), std::ptrdiff_t(0));
    }
};

QTEST_GUILESS_MAIN(TestExportGguf)
#include "tst_export_gguf.moc"
