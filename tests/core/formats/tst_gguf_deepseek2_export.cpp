// The deepseek2 GGUF export and reader. The independent references: llama.cpp's own deepseek2 files
// (tests/data/gguf, written by its gguf-py with its converter's transforms: make_deepseek2_fixtures.py), which our
// reader loads and our writer writes back tensor for tensor; the DeepSeek-V3-layout model in memory, whose every
// tensor the reader gives back bit for bit from the export (the rope parts reordered into llama.cpp's adjacent pairs
// and back where the source keeps the half layout) and whose logits the reloaded export reproduces; and the real
// llama.cpp on the same files (tst_gguf_deepseek2_llama_cpp). Hostile files and models llama.cpp cannot run are
// refused, naming the tensor or key.
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/expect_error.h"
#include "common/test_support.h"

#include "engine/transformer.h"
#include "formats/gguf.h"
#include "formats/gguf_export.h"
#include "formats/gguf_writer.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "pipeline/export_gguf.h"
#include "util/error.h"

using namespace mla;
namespace fs = std::filesystem;

class TestGgufDeepseek2Export : public QObject {
    Q_OBJECT
private slots:
    void roundTrip_data();
    void roundTrip();
    void llamaCppFilesRoundTrip_data();
    void llamaCppFilesRoundTrip();
    void modelsLlamaCppCannotRunAreRefused();
    void hostileFilesAreRefused();
    void convertToGgufChecksBeforeWork();
};

namespace {

using test::expectError;

fs::path tokenizer512()
{
    return test::demoDir() / "tok512.bin";
}

test::DeepSeekShape shape512()
{
    test::DeepSeekShape s;
    s.vocab = 512; // the demo tokenizer's
    return s;
}

using mla::test::logitsOf;

std::vector<int> deepseekExportIds(std::int64_t vocab, int count)
{
    std::vector<int> ids = {1};
    for (int i = 1; i < count; ++i)
        ids.push_back(3 + static_cast<int>((i * 131) % (vocab - 3)));
    return ids;
}

// Every tensor the config plans, equal as float32 values.
void compareTensors(const Model& a, const Model& b)
{
    for (const PlannedTensor& p : tensorPlan(a.config)) {
        const std::vector<float> x = modelTensor(a, p.role, p.layer).toFloats();
        const std::vector<float> y = modelTensor(b, p.role, p.layer).toFloats();
        QVERIFY2(x == y, (std::string(tensorRoleLabel(p.role)) + " of layer " + std::to_string(p.layer)).c_str());
    }
}

using Metadata = std::vector<std::pair<std::string, GgufValue>>;

// A copy of a GGUF file (tensors as F32) with its metadata changed by `editKeys`; `tensorDims` gives each tensor's
// dims in the copy, or nullopt to leave it out.
fs::path editedCopy(const fs::path& from, const fs::path& to, const std::function<void(Metadata&)>& editKeys,
                    const std::function<std::optional<std::vector<std::uint64_t>>(const GgufTensorInfo&)>& tensorDims)
{
    const GgufFile g = GgufFile::open(from);
    Metadata m(g.metadata().begin(), g.metadata().end());
    editKeys(m);
    GgufWriter w(to, 32, OutputOptions{true, {}});
    for (auto& [k, v] : m)
        w.setMetadata(k, v);
    std::vector<std::pair<std::string, std::vector<float>>> data;
    for (const GgufTensorInfo& t : g.tensors()) {
        const auto dims = tensorDims(t);
        if (!dims)
            continue;
        std::vector<float> values = g.tensor(t.name)->toFloats();
        std::uint64_t n = 1;
        for (auto d : *dims)
            n *= d;
        values.resize(n);
        w.declareTensor({t.name, GgmlType::F32, *dims});
        data.emplace_back(t.name, std::move(values));
    }
    for (const auto& [name, values] : data)
        w.writeTensor(name, values.data(), values.size());
    w.finish();
    return to;
}

} // namespace

void TestGgufDeepseek2Export::roundTrip_data()
{
    QTest::addColumn<bool>("interleave");
    QTest::addColumn<int>("qLora");
    QTest::addColumn<int>("layers");
    QTest::newRow("interleaved rope, plain q") << true << 0 << 2;
    QTest::newRow("half rope, plain q") << false << 0 << 2;
    QTest::newRow("interleaved rope, query latent") << true << 10 << 2;
    QTest::newRow("26 blocks (llama.cpp's lite guess), plain q") << true << 0 << 26;
}

void TestGgufDeepseek2Export::roundTrip()
{
    QFETCH(bool, interleave);
    QFETCH(int, qLora);
    QFETCH(int, layers);
    test::DeepSeekShape s = shape512();
    s.interleave = interleave;
    s.qLora = qLora;
    s.layers = layers;
    const Model source = test::randomDeepSeekModel(s, 11);
    const fs::path dir = test::scratchDir("gguf-deepseek2-roundtrip");
    GgufExportOptions options;
    options.file = dir / "model.gguf";
    options.tokenizerFile = tokenizer512();
    options.overwrite = true;
    const GgufExportReport report = exportGguf(source, options);
    QCOMPARE(report.architecture, std::string("deepseek2"));
    QCOMPARE(report.kvValuesPerToken, (s.kvLora + s.rope) * s.layers);

    // The keys llama.cpp's loader reads, consistent with each other (our reader checks them as llama.cpp does).
    const GgufFile g = GgufFile::open(options.file);
    auto integer = [&](const std::string& key) { return g.find("deepseek2." + key)->integer; };
    QCOMPARE(integer("attention.kv_lora_rank"), s.kvLora);
    QCOMPARE(integer("attention.key_length_mla"), s.nope + s.rope);
    QCOMPARE(integer("attention.value_length_mla"), s.value);
    QCOMPARE(integer("attention.head_count_kv"), std::int64_t(1));
    QCOMPARE(integer("attention.q_lora_rank"), std::int64_t(qLora));
    QCOMPARE(integer("leading_dense_block_count"), std::int64_t(layers));
    QVERIFY(g.tensor("blk.0.attn_k_b.weight").has_value());
    QVERIFY(!g.tensor("blk.0.attn_kv_b.weight").has_value());

    const Model reloaded = loadModel(options.file);
    QVERIFY(reloaded.config.deepseek.has_value());
    QVERIFY(reloaded.config.deepseek->ropeInterleave);
    QCOMPARE(reloaded.config.deepseek->qLoraRank, std::int64_t(qLora));
    if (interleave) {
        // Every tensor back bit for bit (kv_b_proj split per head and merged again).
        compareTensors(source, reloaded);
    }
    // The same function either way: logits of the model in memory. The rope parts of a half-layout source come back
    // in llama.cpp's adjacent-pair order, so only the summation order differs.
    const std::vector<int> ids = deepseekExportIds(s.vocab, 12);
    const MatrixRM a = logitsOf(source, ids);
    const MatrixRM b = logitsOf(reloaded, ids);
    const double diff = test::maxAbsoluteDifference(a.data(), b.data(), static_cast<std::size_t>(a.size()));
    const double scale = a.cwiseAbs().maxCoeff();
    qInfo("max |logit difference| %.3g (logits up to %.3g)", diff, scale);
    QVERIFY2(diff <= (interleave ? 0.0 : 1e-5 * scale), qPrintable(QString::number(diff)));

    // Written again from the reloaded model: the same tensors (the writer is the reader's inverse).
    GgufExportOptions again = options;
    again.file = dir / "again.gguf";
    exportGguf(reloaded, again);
    const GgufFile g2 = GgufFile::open(again.file);
    for (const GgufTensorInfo& t : g.tensors())
        QVERIFY2(g.tensor(t.name)->toFloats() == g2.tensor(t.name)->toFloats(), t.name.c_str());

    // Quantised: matrices whose rows are whole blocks in Q8_0, the rest F16; the reloaded model still agrees closely.
    GgufExportOptions q8 = options;
    q8.file = dir / "q8.gguf";
    q8.weights = GgmlType::Q8_0;
    const GgufExportReport q8Report = exportGguf(source, q8);
    QVERIFY(!q8Report.keptInF16.empty()); // attn_k_b rows are nope = 6 values
    const MatrixRM c = logitsOf(loadModel(q8.file), ids);
    QVERIFY(test::relativeNormDifference(a.data(), c.data(), static_cast<std::size_t>(a.size())) < 0.05);
}

void TestGgufDeepseek2Export::llamaCppFilesRoundTrip_data()
{
    QTest::addColumn<QString>("name");
    for (const char* n : {"deepseek2_dense", "deepseek2_lite", "deepseek2_qlora", "deepseek2_legacy"})
        QTest::newRow(n) << QString(n);
}

void TestGgufDeepseek2Export::llamaCppFilesRoundTrip()
{
    QFETCH(QString, name);
    const fs::path file = test::sourceDir() / "data" / "gguf" / (name.toStdString() + ".gguf");
    const Model model = loadModel(file);
    QVERIFY(model.config.deepseek.has_value());
    QCOMPARE(model.config.deepseek->latentNormEps, model.config.rmsEps);
    const fs::path dir = test::scratchDir("gguf-deepseek2-files");
    GgufExportOptions options;
    options.file = dir / (name.toStdString() + ".gguf");
    options.overwrite = true;
    exportGguf(model, options);
    // Every tensor of llama.cpp's file, as it wrote it (the older layout's attn_kv_b comes back split, as its current
    // converter writes it; the merged kv_b_proj is compared instead).
    const GgufFile theirs = GgufFile::open(file);
    const GgufFile ours = GgufFile::open(options.file);
    for (const GgufTensorInfo& t : theirs.tensors()) {
        if (t.name.ends_with("attn_kv_b.weight"))
            continue;
        const auto mine = ours.tensor(t.name);
        QVERIFY2(mine.has_value(), t.name.c_str());
        QVERIFY2(mine->shape() == theirs.tensor(t.name)->shape(), t.name.c_str());
        QVERIFY2(mine->toFloats() == theirs.tensor(t.name)->toFloats(), t.name.c_str());
    }
    compareTensors(model, loadModel(options.file));
}

void TestGgufDeepseek2Export::modelsLlamaCppCannotRunAreRefused()
{
    const fs::path dir = test::scratchDir("gguf-deepseek2-refused");
    GgufExportOptions options;
    options.tokenizerFile = tokenizer512();
    options.overwrite = true;

    test::DeepSeekShape s = shape512();
    s.bias = true;
    options.file = dir / "bias.gguf";
    expectError([&] { exportGguf(test::randomDeepSeekModel(s, 1), options); }, "attention biases");

    s = shape512();
    s.layers = 27;
    s.qLora = 8;
    options.file = dir / "lite.gguf";
    expectError([&] { exportGguf(test::randomDeepSeekModel(s, 2), options); }, "ignores q_lora_rank");

    s = shape512();
    s.ropeConfig.scaling = RopeScaling::Yarn;
    s.ropeConfig.factor = 4.0;
    s.ropeConfig.originalMaxPositions = 16;
    options.file = dir / "yarn.gguf";
    expectError([&] { exportGguf(test::randomDeepSeekModel(s, 3), options); }, "rope scaling");
    for (const char* f : {"bias.gguf", "lite.gguf", "yarn.gguf"})
        QVERIFY2(!fs::exists(dir / f), f); // refused before the file was created
}

void TestGgufDeepseek2Export::hostileFilesAreRefused()
{
    const fs::path dense = test::sourceDir() / "data" / "gguf" / "deepseek2_dense.gguf";
    const fs::path dir = test::scratchDir("gguf-deepseek2-hostile");
    auto keepAll = [](const GgufTensorInfo& t) { return std::optional<std::vector<std::uint64_t>>(t.dims); };
    auto sameKeys = [](Metadata&) {};

    const fs::path noNorm = editedCopy(dense, dir / "no-norm.gguf", sameKeys, [](const GgufTensorInfo& t) {
        return t.name == "blk.1.attn_kv_a_norm.weight" ? std::nullopt : std::optional<std::vector<std::uint64_t>>(t.dims);
    });
    expectError([&] { loadModel(noNorm); }, "missing tensor 'blk.1.attn_kv_a_norm.weight'");

    const fs::path noKb = editedCopy(dense, dir / "no-kb.gguf", sameKeys, [](const GgufTensorInfo& t) {
        return t.name == "blk.0.attn_k_b.weight" ? std::nullopt : std::optional<std::vector<std::uint64_t>>(t.dims);
    });
    expectError([&] { loadModel(noKb); }, "missing tensor 'blk.0.attn_k_b.weight'");

    // kv_lora_rank changed but not the tensors: the shapes contradict the key.
    const fs::path rank = editedCopy(dense, dir / "rank.gguf", [](Metadata& m) {
        for (auto& [k, v] : m)
            if (k == "deepseek2.attention.kv_lora_rank") {
                v = ggufU32(6);
            } else if (k == "deepseek2.attention.key_length") {
                v = ggufU32(6 + 4);
            } else if (k == "deepseek2.attention.value_length") {
                v = ggufU32(6);
            }
    }, keepAll);
    expectError([&] { loadModel(rank); }, "has wrong shape");

    const fs::path wide = editedCopy(dense, dir / "wide.gguf", [](Metadata& m) {
        for (auto& [k, v] : m)
            if (k == "deepseek2.attention.kv_lora_rank")
                v = ggufU32(1000);
    }, keepAll);
    expectError([&] { loadModel(wide); }, "kv_lora_rank 1000 is larger than the hidden size");

    const fs::path moe = editedCopy(dense, dir / "moe.gguf", [](Metadata& m) {
        m.emplace_back("deepseek2.expert_count", ggufU32(4));
    }, keepAll);
    expectError([&] { loadModel(moe); }, "expert_count 4");
}

void TestGgufDeepseek2Export::convertToGgufChecksBeforeWork()
{
    const fs::path dir = test::scratchDir("gguf-deepseek2-pipeline");
    pipeline::OpenRequest request;
    request.model = test::realModelPath("stories260K");
    const pipeline::OpenedModel opened = pipeline::openModel(request, ExecutionContext());
    Settings settings;
    GgufExportOptions options;
    options.file = dir / "out.gguf";
    // The mha2mla target has no llama.cpp architecture.
    expectError([&] { pipeline::convertToGguf(opened, nullptr, settings, options, std::nullopt, ExecutionContext()); },
                "--target deepseek-v3");
    // A file that is not ours, refused before any calibration or conversion.
    settings.conversion.target = ConversionTarget::DeepSeekV3;
    test::writeTextFile(options.file, "precious");
    expectError([&] { pipeline::convertToGguf(opened, nullptr, settings, options, std::nullopt, ExecutionContext()); },
                "is not a GGUF file written by MLA Workbench");
    QCOMPARE(test::readTextFile(options.file), std::string("precious"));
    // The model's own file is never an output, even forced.
    options.file = opened.model->source;
    options.overwrite = true;
    expectError([&] { pipeline::convertToGguf(opened, nullptr, settings, options, std::nullopt, ExecutionContext()); },
                "input");
}

QTEST_GUILESS_MAIN(TestGgufDeepseek2Export)
#include "tst_gguf_deepseek2_export.moc"
