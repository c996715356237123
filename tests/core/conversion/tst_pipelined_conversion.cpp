// The pipelined streaming conversion (read layer i+1, convert layer i, write layer i-1 at once) writes the same
// bytes as the same steps run one after another, for the plain and the calibrated (sequential refit) conversions, on
// real checkpoints and a synthetic GQA model with biases; progress stays on the caller's thread and never goes back;
// a cancel at any point leaves no output behind.
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "conversion/layer_pipeline.h"
#include "conversion/presets.h"
#include "pipeline/convert.h"
#include "pipeline/open_model.h"

#include <QtTest>

#include <fstream>
#include <map>
#include <thread>

using namespace mla;
using namespace mla::pipeline;
namespace fs = std::filesystem;

namespace {

std::map<std::string, std::string> folderFiles(const fs::path& folder)
{
    std::map<std::string, std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(folder)) {
        if (!entry.is_regular_file())
            continue;
        std::ifstream in(entry.path(), std::ios::binary);
        files[entry.path().lexically_relative(folder).generic_string()] = std::string(std::istreambuf_iterator<char>(in), {});
    }
    return files;
}

// Every file of both folders, byte for byte (the names too).
void compareFolders(const fs::path& a, const fs::path& b)
{
    const auto fa = folderFiles(a), fb = folderFiles(b);
    QVERIFY(fa.count("model.safetensors") || fa.count("model.safetensors.index.json"));
    QCOMPARE(fa.size(), fb.size());
    for (const auto& [name, bytes] : fa) {
        const auto it = fb.find(name);
        QVERIFY2(it != fb.end(), name.c_str());
        QVERIFY2(it->second == bytes, (name + " differs").c_str());
    }
}

// A small Qwen2-style GQA model (q/k/v biases, 4 query heads on 2 KV heads) with random weights, written as a
// Hugging Face folder so that the pipeline opens it like any checkpoint.
fs::path writeBiasedGqaModel(const fs::path& folder)
{
    ModelConfig c;
    c.architecture = "qwen2";
    c.hidden = 32;
    c.ffn = 48;
    c.layers = 4;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 8;
    c.vocab = 64;
    c.maxPositions = 64;
    c.rmsEps = 1e-6;
    c.qkvBias = true;
    c.bosId = 1;
    const Model m = test::randomModel(c, 19);
    ExportOptions e;
    e.folder = folder;
    e.dtype = DType::BF16;
    exportModel(m, e);
    return folder;
}

Settings quickSettings()
{
    Settings s;
    s.calibration.samples = 2;
    s.calibration.sequenceLength = 32;
    return s;
}

OpenedModel openFolder(const fs::path& path)
{
    return openModel({path, std::nullopt, false}, ExecutionContext());
}

} // namespace

class TestPipelinedConversion : public QObject {
    Q_OBJECT
private slots:
    void plainExportIsByteIdentical_data();
    void plainExportIsByteIdentical();
    void pipelineActionIsByteIdentical_data();
    void pipelineActionIsByteIdentical();
    void progressStaysOnTheCallersThread();
    void cancelAtAnyPointLeavesNothing_data();
    void cancelAtAnyPointLeavesNothing();
    void stageErrorReachesTheCaller();
    void atMostThreeLayersInFlight();
};

void TestPipelinedConversion::plainExportIsByteIdentical_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("dtype");
    QTest::addColumn<int>("shardKiB");
    QTest::newRow("stories260K joint") << QStringLiteral("stories260K") << int(LatentMethod::Joint) << -1 << 0;
    QTest::newRow("stories260K-hf split bf16 shards") << QStringLiteral("stories260K-hf") << int(LatentMethod::Split) << int(DType::BF16) << 96;
    QTest::newRow("aidreams260K-hf key f16") << QStringLiteral("aidreams260K-hf") << int(LatentMethod::Key) << int(DType::F16) << 0;
    QTest::newRow("xs260K value") << QStringLiteral("xs260K") << int(LatentMethod::Value) << -1 << 0;
    QTest::newRow("poem5L none") << QStringLiteral("poem5L") << int(LatentMethod::None) << -1 << 0;
}

// exportConvertedModel, the streaming path of the plain conversion, pipelined and not.
void TestPipelinedConversion::plainExportIsByteIdentical()
{
    QFETCH(QString, name);
    QFETCH(int, method);
    QFETCH(int, dtype);
    QFETCH(int, shardKiB);
    const Model original = test::loadRealModel(name.toStdString());
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.method = static_cast<LatentMethod>(method);
    if (s.method == LatentMethod::None)
        s.ropePairs = 2;
    if (s.method == LatentMethod::Key || s.method == LatentMethod::Value)
        s.latentDim = 8;
    const ConversionPlan p = planConversion(original.config, s, selectPairs(original.config, s, nullptr));
    const fs::path dir = test::scratchDir("pipelined-plain-" + std::to_string(method));
    std::vector<LayerConversionReport> reports[2];
    for (int pipelined = 0; pipelined < 2; ++pipelined) {
        ExportOptions e;
        e.folder = dir / (pipelined ? "pipelined" : "sequential");
        e.extraFiles = companionFiles(original);
        if (dtype >= 0)
            e.dtype = static_cast<DType>(dtype);
        e.shardBytes = static_cast<std::uint64_t>(shardKiB) << 10;
        e.pipelined = pipelined == 1;
        reports[pipelined] = exportConvertedModel(cpuBackend(), original, p, e).layers;
    }
    compareFolders(dir / "sequential", dir / "pipelined");
    QCOMPARE(reports[1].size(), static_cast<std::size_t>(original.config.layers));
    for (std::size_t l = 0; l < reports[0].size(); ++l)
        QCOMPARE(reports[1][l].jointRelativeError, reports[0][l].jointRelativeError);
}

void TestPipelinedConversion::pipelineActionIsByteIdentical_data()
{
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("preset");
    QTest::newRow("demo best (calibrated, allocated, refits)") << QStringLiteral("demo") << QStringLiteral("best");
    QTest::newRow("GQA with biases plain") << QStringLiteral("gqa-bias") << QStringLiteral("paper");
    QTest::newRow("GQA with biases best") << QStringLiteral("gqa-bias") << QStringLiteral("best");
    QTest::newRow("GQA with biases whitened, no refit") << QStringLiteral("gqa-bias") << QStringLiteral("whiten");
}

// convertToFolder (the CLI's convert) with the request's pipelined flag on and off.
void TestPipelinedConversion::pipelineActionIsByteIdentical()
{
    QFETCH(QString, model);
    QFETCH(QString, preset);
    const fs::path dir = test::scratchDir("pipelined-action");
    const OpenedModel opened = model == "demo"
                                   ? openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext())
                                   : openFolder(writeBiasedGqaModel(dir / "model"));
    Settings s = quickSettings();
    if (model != "demo") {
        // Random weights sample short texts; the calibration is given as ids instead.
        const fs::path ids = dir / "calibration-ids.txt";
        std::ofstream(ids) << "1 5 9 13 60 7 3 11 2 44 17 23 8 31 50 4\n1 40 41 42 43 12 19 27 33 6 14 9\n";
        s.calibration.source = CalibrationOptions::Source::Ids;
        s.calibration.file = ids;
    }
    if (preset == "whiten") {
        s.conversion.activationAware = true;
    } else {
        applyPreset(preset.toStdString(), s.conversion);
    }
    FolderOutcome outcomes[2];
    for (int pipelined = 0; pipelined < 2; ++pipelined) {
        ExportRequest request;
        request.folder = dir / (pipelined ? "pipelined" : "sequential");
        request.pipelined = pipelined == 1;
        outcomes[pipelined] = convertToFolder(opened, nullptr, s, request, std::nullopt, ExecutionContext());
    }
    compareFolders(dir / "sequential", dir / "pipelined");
    QCOMPARE(outcomes[1].conversion.fits.size(), outcomes[0].conversion.fits.size());
    if (preset != "paper")
        QCOMPARE(outcomes[1].conversion.fits.size(), static_cast<std::size_t>(opened.model->config.layers));
    for (std::size_t l = 0; l < outcomes[0].conversion.fits.size(); ++l)
        QCOMPARE(outcomes[1].conversion.fits[l].outputErrorFinal, outcomes[0].conversion.fits[l].outputErrorFinal);
}

// The job's callback is called from the thread that runs the conversion only (the worker's stages are relayed), its
// fraction never goes back, and every layer is announced.
void TestPipelinedConversion::progressStaysOnTheCallersThread()
{
    const Model original = test::loadRealModel("stories260K");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 1;
    s.latentDim = 8;
    s.activationAware = true;
    s.chooseBalance = true;
    s.refit = true;
    const ConversionPlan plan = planConversion(original.config, s, selectPairs(original.config, s, nullptr));
    CalibrationSet calibration;
    calibration.sequences = {{1, 5, 9, 13, 200, 7, 3, 11}, {1, 40, 41, 42, 43}};
    const std::thread::id caller = std::this_thread::get_id();
    bool otherThread = false;
    double last = -1.0, worstStepBack = 0.0;
    std::vector<std::string> stages;
    JobControl job(nullptr, [&](double f, const std::string& stage) {
        otherThread = otherThread || std::this_thread::get_id() != caller;
        worstStepBack = std::max(worstStepBack, last - f);
        last = std::max(last, f);
        stages.push_back(stage);
    });
    ExportOptions e;
    e.folder = test::scratchDir("pipelined-progress") / "out";
    std::vector<LayerFitReport> fits;
    exportSequentially(cpuBackend(), original, plan, calibration, e, job, &fits);
    QCOMPARE(fits.size(), static_cast<std::size_t>(original.config.layers));
    QVERIFY(!otherThread);
    QCOMPARE(worstStepBack, 0.0);
    QCOMPARE(last, 1.0);
    for (std::int64_t l = 0; l < original.config.layers; ++l) {
        const std::string prefix = "converting layer " + std::to_string(l);
        QVERIFY2(std::any_of(stages.begin(), stages.end(), [&](const std::string& st) { return st.rfind(prefix, 0) == 0; }),
                 prefix.c_str());
    }
}

void TestPipelinedConversion::cancelAtAnyPointLeavesNothing_data()
{
    QTest::addColumn<bool>("calibrated");
    QTest::addColumn<int>("atCall");
    for (int at : {1, 2, 5, 9, 17, 33, 60})
        QTest::addRow("plain, progress call %d", at) << false << at;
    for (int at : {1, 3, 8, 20})
        QTest::addRow("calibrated, progress call %d", at) << true << at;
}

// The cancel flag raised at the n-th progress report: while the first layer is read, while a layer is converted on
// the worker, between tensors of the writer. Nothing is left in the output's parent folder.
void TestPipelinedConversion::cancelAtAnyPointLeavesNothing()
{
    QFETCH(bool, calibrated);
    QFETCH(int, atCall);
    const Model original = test::loadRealModel("stories260K");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 1;
    s.latentDim = 8;
    const ConversionPlan plan = planConversion(original.config, s, selectPairs(original.config, s, nullptr));
    const fs::path dir = test::scratchDir("pipelined-cancel") / "out";
    std::atomic<bool> cancel{false};
    int calls = 0;
    JobControl job(&cancel, [&](double, const std::string&) {
        if (++calls == atCall)
            cancel = true;
    });
    ExportOptions e;
    e.folder = dir;
    if (calibrated) {
        CalibrationSet calibration;
        calibration.sequences = {{1, 5, 9, 13, 200, 7, 3}, {1, 40, 41, 42}};
        QVERIFY_THROWS_EXCEPTION(Cancelled, exportSequentially(cpuBackend(), original, plan, calibration, e, job));
    } else {
        QVERIFY_THROWS_EXCEPTION(Cancelled, exportConvertedModel(cpuBackend(), original, plan, e, {}, job));
    }
    QVERIFY(calls >= atCall);
    QVERIFY(!fs::exists(dir));
    for (const auto& entry : fs::directory_iterator(dir.parent_path()))
        QFAIL(qPrintable(QStringLiteral("left behind: ") + QString::fromStdString(entry.path().string())));
}

// An error in a stage (here the worker's third layer) is the error the caller sees, and the pipeline's threads end.
void TestPipelinedConversion::stageErrorReachesTheCaller()
{
    std::atomic<int> computed{0};
    LayerPipeline<int> pipeline(
        6, [](std::int64_t) {},
        [&](std::int64_t l, const JobControl&) {
            if (l == 2)
                throw Error("layer 2 failed");
            ++computed;
            return static_cast<int>(l * 10);
        },
        JobControl(), true);
    QCOMPARE(pipeline.take(0, 0.0), 0);
    QCOMPARE(pipeline.take(1, 0.1), 10);
    try {
        pipeline.take(2, 0.2);
        QFAIL("no error");
    } catch (const Error& e) {
        QCOMPARE(std::string(e.what()), std::string("layer 2 failed"));
    }
    QCOMPARE(computed.load(), 2); // nothing ran past the failed layer
}

// The memory bound: while the writer holds layer w, the worker converts at most w+1 and the reader reads at most
// w+2; with a slow writer both stages do run ahead (the overlap happens).
void TestPipelinedConversion::atMostThreeLayersInFlight()
{
    std::atomic<std::int64_t> taking{-1};
    std::atomic<std::int64_t> readAhead{-10}, computeAhead{-10};
    auto raise = [](std::atomic<std::int64_t>& highest, std::int64_t v) {
        std::int64_t h = highest.load();
        while (v > h && !highest.compare_exchange_weak(h, v)) {
        }
    };
    LayerPipeline<std::int64_t> pipeline(
        8, [&](std::int64_t l) { raise(readAhead, l - taking.load()); },
        [&](std::int64_t l, const JobControl&) {
            raise(computeAhead, l - taking.load());
            return l * 3;
        },
        JobControl(), true);
    for (std::int64_t l = 0; l < 8; ++l) {
        taking = l;
        QCOMPARE(pipeline.take(l, 0.0), l * 3);
        std::this_thread::sleep_for(std::chrono::milliseconds(20)); // writing layer l
    }
    QVERIFY2(readAhead.load() <= 2, qPrintable(QString::number(readAhead.load())));
    QVERIFY2(computeAhead.load() <= 1, qPrintable(QString::number(computeAhead.load())));
    QVERIFY(readAhead.load() >= 1);
    QVERIFY(computeAhead.load() >= 1);
}

QTEST_APPLESS_MAIN(TestPipelinedConversion)
#include "tst_pipelined_conversion.moc"
