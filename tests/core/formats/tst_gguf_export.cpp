// The GGUF export of unconverted models. The independent reference is llama.cpp's own conversion of stories260K
// (tests/data/models/stories260K/stories260K.gguf, made by its convert-llama2c-to-ggml from the same llama2.c
// checkpoint): our export of stories260K.bin holds the same tensors byte for byte (so the same interleaved
// query/key row order) and the same vocabulary. Then, on every real model and on tiny models of every
// architecture: read back by our loader, the export has the source's config and weights bit for bit and gives
// bit-identical logits; F16 and BF16 exports hold the source rounded to nearest even; quantised exports keep
// matrices whose rows are not whole blocks in F16; outputs are staged and never replace an input.
#include "common/model_fixtures.h"
#include "common/expect_error.h"
#include "common/test_support.h"
#include "core/formats/gguf_test_fixtures.h"

#include "formats/gguf.h"
#include "formats/gguf_export.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <cstring>

using namespace mla;
namespace fs = std::filesystem;

namespace {

std::optional<fs::path> tokenizerFor(const std::string& name)
{
    // xs260K ships without a tokenizer; it was trained with the TinyStories tok512.bin.
    if (name == "xs260K")
        return test::demoDir() / "tok512.bin";
    return std::nullopt;
}

bool sameBytes(const Tensor& a, const Tensor& b)
{
    return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

void compareWeights(const Model& source, const Model& exported, std::optional<DType> rounding)
{
    for (const PlannedTensor& p : tensorPlan(source.config)) {
        const Tensor a = modelTensor(source, p.role, p.layer);
        const Tensor b = modelTensor(exported, p.role, p.layer);
        const std::string what = *tensorName(p.role, TensorNaming::Gguf, p.layer);
        if (!rounding || isVectorRole(p.role)) {
            QCOMPARE(b.shape(), a.shape());
            QVERIFY2(a.toFloats() == b.toFloats(), what.c_str());
        } else {
            const std::vector<float> values = a.toFloats();
            QVERIFY2(sameBytes(Tensor::fromFloats(*rounding, a.shape(), values.data()), b), what.c_str());
        }
    }
}

void compareConfigs(const ModelConfig& a, const ModelConfig& b)
{
    QCOMPARE(b.architecture, a.architecture == "mistral" ? std::string("llama") : a.architecture);
    QCOMPARE(b.hidden, a.hidden);
    QCOMPARE(b.ffn, a.ffn);
    QCOMPARE(b.layers, a.layers);
    QCOMPARE(b.heads, a.heads);
    QCOMPARE(b.kvHeads, a.kvHeads);
    QCOMPARE(b.headDim, a.headDim);
    QCOMPARE(b.vocab, a.vocab);
    QCOMPARE(b.maxPositions, a.maxPositions);
    QCOMPARE(static_cast<float>(b.rmsEps), static_cast<float>(a.rmsEps));
    QCOMPARE(static_cast<float>(b.rope.theta), static_cast<float>(a.rope.theta));
    QCOMPARE(b.tieEmbeddings, a.tieEmbeddings);
    QCOMPARE(b.qkvBias, a.qkvBias);
    QCOMPARE(b.qkNorm, a.qkNorm);
}

using mla::test::logitsOf;

std::vector<int> someIds(std::int64_t vocab, std::size_t n)
{
    std::vector<int> ids;
    for (std::size_t i = 0; i < n; ++i)
        ids.push_back(static_cast<int>((1 + i * 37) % static_cast<std::size_t>(vocab)));
    return ids;
}

using test::expectError;

} // namespace

class TestGgufExport : public QObject {
    Q_OBJECT
private slots:
    void matchesLlamaCppsOwnConversion();
    void realModelsRoundTrip_data();
    void realModelsRoundTrip();
    void halfPrecisionExports();
    void quantisedExportKeepsPartialBlocksInF16();
    void architecturesRoundTrip();
    void outputSafety();
};

void TestGgufExport::matchesLlamaCppsOwnConversion()
{
    const fs::path dir = test::scratchDir("llama-cpp-conversion");
    const Model model = test::loadRealModel("stories260K");
    GgufExportOptions options;
    options.file = dir / "stories260K.gguf";
    const GgufExportReport report = exportGguf(model, options);
    QCOMPARE(report.architecture, std::string("llama"));
    QVERIFY(report.tokenizer.find("tok512.bin") != std::string::npos);

    const GgufFile ours = GgufFile::open(options.file);
    const GgufFile theirs = GgufFile::open(test::realModelPath("stories260K-gguf"));
    // Same tensors, byte for byte (their file stores everything F32, as our export of an F32 model does), except
    // that their converter writes the tied output head out as a copy of the embedding, which we leave tied.
    QCOMPARE(ours.tensors().size() + 1, theirs.tensors().size());
    QVERIFY(!ours.tensor("output.weight"));
    for (const GgufTensorInfo& t : theirs.tensors()) {
        const auto a = ours.tensor(t.name == "output.weight" ? "token_embd.weight" : t.name);
        QVERIFY2(a.has_value(), t.name.c_str());
        QVERIFY2(sameBytes(*a, *theirs.tensor(t.name)), t.name.c_str());
    }
    // The same vocabulary (convert-llama2c's token texts, scores and types) and special ids.
    for (const char* key : {"tokenizer.ggml.tokens"})
        QCOMPARE(ours.find(key)->strings, theirs.find(key)->strings);
    for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"})
        QCOMPARE(ours.find(key)->numbers, theirs.find(key)->numbers);
    QCOMPARE(ours.find("tokenizer.ggml.model")->string, theirs.find("tokenizer.ggml.model")->string);
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                            "llama.embedding_length", "llama.feed_forward_length",
                            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.block_count",
                            "llama.rope.dimension_count"})
        QCOMPARE(ours.find(key)->integer, theirs.find(key)->integer);
    // Their converter writes its own default context (2048); ours is the checkpoint's seq_len.
    QCOMPARE(ours.find("llama.context_length")->integer, std::int64_t(512));
    QCOMPARE(ours.find("llama.attention.layer_norm_rms_epsilon")->number,
             theirs.find("llama.attention.layer_norm_rms_epsilon")->number);
    QCOMPARE(ours.find("general.architecture")->string, std::string("llama"));
    QCOMPARE(ours.find("general.file_type")->integer, std::int64_t(0));
    QCOMPARE(ours.find("mla_workbench.model")->string, std::string("original"));
    // The model card travels in the file, with the commands that run it.
    const std::string card = ours.find("mla_workbench.model_card")->string;
    QCOMPARE(card, report.modelCard);
    QVERIFY(card.find("llama-cli -m stories260K.gguf -p 'Once upon a time' -n 64 --temp 0") != std::string::npos);
    QVERIFY(card.find("npx -y node-llama-cpp@3.21.1 complete --model stories260K.gguf") != std::string::npos);
    QVERIFY(card.find("KV cache: 320 values per token") != std::string::npos);
    QCOMPARE(report.kvValuesPerToken, std::int64_t(320));
}

void TestGgufExport::realModelsRoundTrip_data()
{
    QTest::addColumn<QString>("name");
    for (const char* name : {"stories260K", "aidreams260K", "poem5L", "xs260K", "stories260K-hf", "stories260K-gguf"})
        QTest::newRow(name) << QString(name);
}

void TestGgufExport::realModelsRoundTrip()
{
    QFETCH(QString, name);
    const std::string model = name.toStdString();
    const fs::path dir = test::scratchDir("round-trip-" + model);
    const Model source = test::loadRealModel(model);
    GgufExportOptions options;
    options.file = dir / "model.gguf";
    options.tokenizerFile = tokenizerFor(model);
    const GgufExportReport report = exportGguf(source, options);
    Model exported = loadModel(options.file);
    // poem5L's character vocabulary has no byte tokens: the export adds the 256, reading as <unk> (id 0).
    const std::int64_t added = model == "poem5L" ? 256 : 0;
    QCOMPARE(exported.config.vocab, source.config.vocab + added);
    QCOMPARE(report.notes.size(), std::size_t(added > 0 ? 1 : 0));
    const std::vector<int> ids = someIds(source.config.vocab, 24);
    const MatrixRM b = logitsOf(exported, ids);
    if (added > 0) {
        const MatrixRM e = exported.embedding.toMatrix();
        const MatrixRM o = exported.output.toMatrix();
        for (std::int64_t r = source.config.vocab; r < exported.config.vocab; ++r) {
            QVERIFY(e.row(r) == e.row(0));
            QVERIFY(o.row(r) == o.row(0));
            QVERIFY(((b.col(r) - b.col(0)).array().abs() <= 1e-5f * (1.0f + b.col(0).array().abs())).all());
        }
        exported.config.vocab = source.config.vocab;
        exported.embedding = exported.embedding.rowSlice(0, source.config.vocab);
        exported.output = exported.output.rowSlice(0, source.config.vocab);
    }
    compareConfigs(source.config, exported.config);
    compareWeights(source, exported, std::nullopt);
    const MatrixRM a = logitsOf(source, ids);
    QCOMPARE(b.rows(), a.rows());
    // The source's logits, bit for bit (and the added tokens' copies of <unk>'s after them).
    const MatrixRM bSource = b.leftCols(source.config.vocab);
    QVERIFY(std::memcmp(a.data(), bSource.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0);

    // The embedded vocabulary, read back as our engine reads it, tokenizes like the source's tokenizer.
    QVERIFY(exported.embeddedVocabulary.has_value());
    const auto embedded = tokenizerFromEmbedded(*exported.embeddedVocabulary, options.file);
    std::unique_ptr<Tokenizer> original;
    if (source.format == "gguf")
        original = tokenizerFromEmbedded(*source.embeddedVocabulary, source.source);
    else
        original = loadTokenizer(options.tokenizerFile ? *options.tokenizerFile : *findTokenizerNextTo(source.source));
    std::vector<std::string> texts = {"Once upon a time, there was a little girl named Lily.", "The cat sat on the mat."};
    if (model == "poem5L")
        texts = {"\xE5\xBA\x8A\xE5\x89\x8D\xE6\x98\x8E\xE6\x9C\x88\xE5\x85\x89"}; // 床前明月光
    for (const auto& text : texts)
        QCOMPARE(embedded->encode(text, true), original->encode(text, true));
    QCOMPARE(embedded->bosId(), original->bosId());
    QCOMPARE(embedded->eosId(), original->eosId());
}

void TestGgufExport::halfPrecisionExports()
{
    const fs::path dir = test::scratchDir("half");
    const Model source = test::loadRealModel("aidreams260K");
    for (const auto& [type, dtype] : {std::pair{GgmlType::F16, DType::F16}, std::pair{GgmlType::BF16, DType::BF16}}) {
        GgufExportOptions options;
        options.file = dir / (std::string(ggmlTypeTraits(type).userName) + ".gguf");
        options.weights = type;
        const auto report = exportGguf(source, options);
        QVERIFY(report.keptInF16.empty());
        const Model exported = loadModel(options.file);
        compareWeights(source, exported, dtype);
        const GgufFile g = GgufFile::open(options.file);
        QCOMPARE(g.find("general.file_type")->integer, std::int64_t(ggmlTypeTraits(type).fileType));
        for (const auto& t : g.tensors())
            QCOMPARE(t.ggmlType, t.dims.size() == 1 ? 0u : static_cast<std::uint32_t>(type)); // norms stay F32
    }
}

void TestGgufExport::quantisedExportKeepsPartialBlocksInF16()
{
    // stories260K: hidden 64 (two blocks) but ffn 172, so ffn_down's rows (172 weights) cannot be Q8_0/Q4_0 blocks.
    const fs::path dir = test::scratchDir("quantised");
    const Model source = test::loadRealModel("stories260K");
    for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        GgufExportOptions options;
        options.file = dir / (std::string(ggmlTypeTraits(type).userName) + ".gguf");
        options.weights = type;
        const auto report = exportGguf(source, options);
        QCOMPARE(report.keptInF16.size(), std::size_t(source.config.layers));
        for (const auto& name : report.keptInF16)
            QVERIFY2(name.find("ffn_down") != std::string::npos, name.c_str());
        // Size: every other matrix in whole blocks, ffn_down in F16, vectors in F32, each tensor padded to 32 bytes.
        std::uint64_t data = 0;
        for (const PlannedTensor& p : tensorPlan(source.config)) {
            std::uint64_t bytes = 0;
            if (isVectorRole(p.role))
                bytes = static_cast<std::uint64_t>(p.shape[0]) * 4;
            else if (p.role == TensorRole::Down)
                bytes = static_cast<std::uint64_t>(p.shape[0] * p.shape[1]) * 2;
            else
                bytes = ggmlRowBytes(type, p.shape[1]) * static_cast<std::uint64_t>(p.shape[0]);
            data += (bytes + 31) / 32 * 32;
        }
        QVERIFY(report.bytesWritten > data);
        QVERIFY(report.bytesWritten - data < 64 * 1024); // the rest is header: metadata and the 512-token vocabulary
        QCOMPARE(static_cast<std::uint64_t>(fs::file_size(options.file)), report.bytesWritten);
    }
}

void TestGgufExport::architecturesRoundTrip()
{
    const fs::path dir = test::scratchDir("archs");
    const fs::path tokenizer = test::demoDir() / "tok512.bin";
    for (const char* arch : {"llama", "mistral", "qwen2", "qwen3"}) {
        const Model source = test::tinyModel(dir, arch, 512);
        GgufExportOptions options;
        options.file = dir / (std::string(arch) + ".gguf");
        options.tokenizerFile = tokenizer;
        const GgufExportReport report = exportGguf(source, options);
        QCOMPARE(report.architecture, std::string(arch) == "mistral" ? std::string("llama") : std::string(arch));
        QCOMPARE(report.notes.empty(), std::string(arch) != "mistral"); // llama.cpp ignores the sliding window
        const Model exported = loadModel(options.file);
        compareConfigs(source.config, exported.config);
        compareWeights(source, exported, std::nullopt);
        const std::vector<int> ids = someIds(512, 16); // shorter than the sliding window
        const MatrixRM a = logitsOf(source, ids);
        const MatrixRM b = logitsOf(exported, ids);
        QVERIFY2(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0, arch);
    }
}

void TestGgufExport::outputSafety()
{
    // The project's output policy (util/output_safety.h) with the model's files as the job's inputs.
    const fs::path dir = test::scratchDir("safety");
    const Model source = test::loadRealModel("aidreams260K");
    GgufExportOptions options;
    options.file = dir / "out.gguf";
    test::writeTextFile(options.file, "precious");
    expectError([&] { exportGguf(source, options); },
                "exists and is not a GGUF file written by MLA Workbench; replaced only when forced (--force)");
    QCOMPARE(test::readTextFile(options.file), std::string("precious"));
    options.overwrite = true;
    exportGguf(source, options);
    QVERIFY(GgufFile::open(options.file).tensors().size() > 0);
    options.overwrite = false;
    exportGguf(source, options); // an earlier GGUF export is replaced without force, as a session file is
    // A GGUF file this tool did not write (here one written by llama.cpp's gguf-py) is the user's: only with force.
    const fs::path foreign = dir / "foreign.gguf";
    fs::copy_file(test::sourceDir() / "data" / "gguf" / "deepseek2_dense.gguf", foreign);
    const auto foreignBytes = test::readTextFile(foreign);
    options.file = foreign;
    expectError([&] { exportGguf(source, options); }, "is not a GGUF file written by MLA Workbench");
    QCOMPARE(test::readTextFile(foreign), foreignBytes);
    options.file = dir / "out.gguf";

    // Never over the input, not even when told to replace; never a folder.
    const Model gguf = loadModel(options.file);
    options.overwrite = true;
    expectError([&] { exportGguf(gguf, options); }, "is an input of this job");
    options.file = dir;
    expectError([&] { exportGguf(source, options); }, "is a folder, which is never replaced");
    options.file = dir / "missing-folder" / "x.gguf";
    expectError([&] { exportGguf(source, options); }, "folder does not exist");
    options.overwrite = false;

    // A model without a tokenizer anywhere: refused before anything is written.
    const Model tiny = test::tinyModel(dir, "llama", 64);
    options.file = dir / "tiny.gguf";
    expectError([&] { exportGguf(tiny, options); }, "--tokenizer FILE");
    options.tokenizerFile = test::demoDir() / "tok512.bin";
    expectError([&] { exportGguf(tiny, options); }, "more than the model's vocabulary of 64");
    QVERIFY(!fs::exists(options.file));
    // Nor inside the input model's folder.
    options.file = dir / "llama" / "inside.gguf";
    options.tokenizerFile.reset();
    expectError([&] { exportGguf(tiny, options); }, "lies inside the input folder");

    // The MHA2MLA layout has no llama.cpp architecture: refused, pointing at the DeepSeek-V3 target.
    Model mla = source;
    mla.config.mla = MlaConfig{};
    options.file = dir / "mla.gguf";
    expectError([&] { exportGguf(mla, options); }, "--target deepseek-v3");
}

QTEST_GUILESS_MAIN(TestGgufExport)
#include "tst_gguf_export.moc"
