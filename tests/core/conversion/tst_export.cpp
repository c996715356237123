// Export in the MHA2MLA layout and reload as an MLA model.
#include "backend/compute_backend.h"
#include "analysis/analyzer.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "formats/safetensors.h"
#include "model/model_loader.h"
#include "util/json_util.h"

#include <QtTest>

using namespace mla;

namespace {

ConversionPlan plan(const Model& original, ConversionSettings s, const AnalysisResult* analysis = nullptr)
{
    return planConversion(original.config, s, selectPairs(original.config, s, analysis));
}

} // namespace

class TestExport : public QObject {
    Q_OBJECT
private slots:
    void reloadGivesBitIdenticalLogits_data();
    void reloadGivesBitIdenticalLogits();
    void layoutAndConfigFollowMha2mla();
    void bf16ExportReloadsWithinTolerance();
    void failedExportLeavesNothing();
};

void TestExport::reloadGivesBitIdenticalLogits_data()
{
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("sigma");
    QTest::newRow("stories joint 2-norm") << QStringLiteral("stories260K") << int(LatentMethod::Joint) << int(SigmaPlacement::Up);
    QTest::newRow("stories-hf split sqrt") << QStringLiteral("stories260K-hf") << int(LatentMethod::Split) << int(SigmaPlacement::Sqrt);
    QTest::newRow("aidreams key") << QStringLiteral("aidreams260K") << int(LatentMethod::Key) << int(SigmaPlacement::Up);
    QTest::newRow("aidreams value") << QStringLiteral("aidreams260K") << int(LatentMethod::Value) << int(SigmaPlacement::Up);
    QTest::newRow("poem none") << QStringLiteral("poem5L") << int(LatentMethod::None) << int(SigmaPlacement::Up);
}

void TestExport::reloadGivesBitIdenticalLogits()
{
    QFETCH(QString, name);
    QFETCH(int, method);
    QFETCH(int, sigma);
    const Model original = test::loadRealModel(name.toStdString());
    AnalysisOptions options;
    options.calibration.samples = 2;
    options.calibration.sequenceLength = 32;
    options.spectra = false;
    options.activationSpectra = false;
    const AnalysisResult analysis = analyzeModel(cpuBackend(), original, nullptr, options);
    ConversionSettings s;
    s.method = static_cast<LatentMethod>(method);
    s.sigma = static_cast<SigmaPlacement>(sigma);
    if (s.method == LatentMethod::None)
        s.ropePairs = 2;
    if (s.method == LatentMethod::Key || s.method == LatentMethod::Value)
        s.latentDim = 8; // one side stays full, so the default 75% saving is out of reach
    const ConversionPlan p = plan(original, s, &analysis);
    const Model inMemory = convertModel(cpuBackend(), original, p);

    const auto dir = test::scratchDir("export-" + std::to_string(method)) / "out";
    ExportOptions e;
    e.folder = dir;
    e.extraFiles = companionFiles(original);
    exportConvertedModel(cpuBackend(), original, p, e);
    const Model reloaded = loadModel(dir);
    QCOMPARE(reloaded.config.attentionKind(), std::string("mla"));
    QCOMPARE(reloaded.config.kvElementsPerToken(), inMemory.config.kvElementsPerToken());
    QVERIFY(reloaded.config.mla->layers == inMemory.config.mla->layers);

    const Transformer a(inMemory);
    const Transformer b(reloaded);
    for (const auto& seq : test::sampleSequences(a, 2, 48, 4)) {
        const MatrixRM la = test::sequenceLogits(a, seq);
        const MatrixRM lb = test::sequenceLogits(b, seq);
        QCOMPARE(test::maxAbsoluteDifference(la.data(), lb.data(), static_cast<std::size_t>(la.size())), 0.0);
    }
}

void TestExport::layoutAndConfigFollowMha2mla()
{
    const Model original = test::loadRealModel("stories260K-hf");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 1;
    s.latentDim = 8;
    const auto dir = test::scratchDir("export-layout") / "out";
    ExportOptions e;
    e.folder = dir;
    e.extraFiles = companionFiles(original);
    exportConvertedModel(cpuBackend(), original, plan(original, s), e);

    const SafetensorsCollection st = SafetensorsCollection::open(dir);
    const std::string p = "model.layers.0.self_attn.";
    QVERIFY(!st.contains(p + "k_proj.weight"));
    QVERIFY(!st.contains(p + "v_proj.weight"));
    QCOMPARE(st.tensor(p + "q_proj.weight").shape(), (std::vector<std::int64_t>{64, 64}));
    QCOMPARE(st.tensor(p + "k_r_proj.weight").shape(), (std::vector<std::int64_t>{4 * 2, 64}));
    QCOMPARE(st.tensor(p + "kv_proj.down_kv.weight").shape(), (std::vector<std::int64_t>{8, 64}));
    QCOMPARE(st.tensor(p + "kv_proj.up_k.weight").shape(), (std::vector<std::int64_t>{4 * 6, 8}));
    QCOMPARE(st.tensor(p + "kv_proj.up_v.weight").shape(), (std::vector<std::int64_t>{4 * 8, 8}));
    QCOMPARE(st.tensor(p + "o_proj.weight").shape(), (std::vector<std::int64_t>{64, 64}));

    // q_proj rows: every head's kept dims first (high, 1 pair: dims 0 and 4 of each 8-dim head), then the rest.
    const MatrixRM q = st.tensor(p + "q_proj.weight").toMatrix();
    const MatrixRM q0 = original.layers[0].q.toMatrix();
    for (int h = 0; h < 8; ++h) {
        QCOMPARE(MatrixRM(q.row(2 * h)), MatrixRM(q0.row(h * 8 + 0)));
        QCOMPARE(MatrixRM(q.row(2 * h + 1)), MatrixRM(q0.row(h * 8 + 4)));
        QCOMPARE(MatrixRM(q.row(16 + 6 * h)), MatrixRM(q0.row(h * 8 + 1)));
    }
    const MatrixRM kr = st.tensor(p + "k_r_proj.weight").toMatrix();
    const MatrixRM k0 = original.layers[0].k.toMatrix();
    QCOMPARE(MatrixRM(kr.row(2)), MatrixRM(k0.row(8 + 0)));
    QCOMPARE(MatrixRM(kr.row(3)), MatrixRM(k0.row(8 + 4)));

    const auto config = readJsonFile(dir / "config.json");
    const auto& m = config.at("mha2mla");
    QCOMPARE(m.at("partial_rope_version").get<std::string>(), std::string("high"));
    QCOMPARE(m.at("rope_dim_for_mla").get<int>(), 2);
    QCOMPARE(m.at("svd_init_method").get<std::string>(), std::string("joint"));
    QCOMPARE(m.at("low_rank").get<int>(), 2); // d_kv = 8 / 4 KV heads
    QCOMPARE(m.at("rope_pairs_kept").size(), std::size_t(5));
    QCOMPARE(m.at("rope_pairs_kept")[0][3], nlohmann::json::array({0}));
    QCOMPARE(config.at("num_key_value_heads").get<int>(), 4); // original fields kept
    QVERIFY(std::filesystem::exists(dir / "tokenizer.bin"));
}

void TestExport::bf16ExportReloadsWithinTolerance()
{
    const Model original = test::loadRealModel("aidreams260K-hf");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 2;
    s.latentDim = 32;
    const ConversionPlan p = plan(original, s);
    const auto dir = test::scratchDir("export-bf16") / "out";
    ExportOptions e;
    e.folder = dir;
    e.dtype = DType::BF16;
    exportConvertedModel(cpuBackend(), original, p, e);
    const Model reloaded = loadModel(dir);
    QCOMPARE(reloaded.layers[0].q.dtype(), DType::BF16);
    // Every tensor was rounded to BF16 (8 significant bits, relative step 2^-8): logits stay within a few 1e-3 of the
    // float32 conversion as a vector, and the greedy argmax rarely moves.
    const Transformer a(convertModel(cpuBackend(), original, p)), b(reloaded);
    const auto seq = test::sampleSequences(a, 1, 32, 1)[0];
    const MatrixRM la = test::sequenceLogits(a, seq), lb = test::sequenceLogits(b, seq);
    const double diff = test::relativeNormDifference(lb.data(), la.data(), static_cast<std::size_t>(la.size()));
    QVERIFY2(diff > 0.0 && diff < 2e-2, qPrintable(QString::number(diff)));
}

void TestExport::failedExportLeavesNothing()
{
    const Model original = test::loadRealModel("stories260K");
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 1;
    s.latentDim = 8;
    const auto dir = test::scratchDir("export-cancel") / "out";
    std::atomic<bool> cancel{false};
    int calls = 0;
    JobControl job(&cancel, [&](double, const std::string&) {
        if (++calls == 20)
            cancel = true;
    });
    ExportOptions e;
    e.folder = dir;
    QVERIFY_THROWS_EXCEPTION(Cancelled, exportConvertedModel(cpuBackend(), original, plan(original, s), e, {}, job));
    QVERIFY(!std::filesystem::exists(dir));
    for (const auto& entry : std::filesystem::directory_iterator(dir.parent_path()))
        QFAIL(qPrintable(QStringLiteral("left behind: ") + QString::fromStdString(entry.path().string())));
}

QTEST_APPLESS_MAIN(TestExport)
#include "tst_export.moc"
