// Real checkpoints in, nonsense out: tied embeddings stored under either name (and aliases from the safetensors
// __metadata__) load to the same logits, tie_word_embeddings is honoured both ways; out-of-range config values and
// conversion settings are refused before any work with the allowed range in the message.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "conversion/settings_validation.h"
#include "engine/transformer.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "model/model_loader.h"
#include "util/error.h"

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

using namespace mla;
namespace fs = std::filesystem;

namespace {

MatrixRM logitsOf(const Model& m)
{
    const Transformer t(m);
    KvCache cache = t.newCache(8);
    const std::vector<int> ids = {1, 403, 17, 88, 2, 311};
    return t.forward(ids, cache, Logits::All);
}

bool identical(const MatrixRM& a, const MatrixRM& b)
{
    return a.rows() == b.rows() && a.cols() == b.cols()
           && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0;
}

// A copy of stories260K-hf whose weights are stored as `store` makes of the original tensors, with `tie` in config.json.
fs::path variant(const std::string& name, bool tie,
                 const std::function<void(std::vector<std::pair<std::string, Tensor>>&, std::map<std::string, std::string>&)>& store)
{
    const fs::path dir = test::scratchDir("validation-" + name);
    const fs::path source = test::realModelPath("stories260K-hf");
    nlohmann::json config = nlohmann::json::parse(test::readTextFile(source / "config.json"));
    config["tie_word_embeddings"] = tie;
    test::writeTextFile(dir / "config.json", config.dump(2));
    const SafetensorsFile file = SafetensorsFile::open(source / "model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : file.names())
        tensors.emplace_back(n, file.tensor(n));
    std::map<std::string, std::string> metadata{{"format", "pt"}};
    store(tensors, metadata);
    writeSafetensors(dir / "model.safetensors", tensors, metadata);
    return dir;
}

void rename(std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& from, const std::string& to)
{
    for (auto& [n, t] : tensors)
        if (n == from)
            n = to;
}

Tensor scaled(const Tensor& t, float factor)
{
    std::vector<float> v = t.toFloats();
    for (auto& x : v)
        x *= factor;
    return Tensor::fromFloats(DType::F32, t.shape(), v.data());
}

std::string errorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestInputValidation : public QObject {
    Q_OBJECT

private slots:
    void tiedEmbeddingsUnderEitherName();
    void tieWordEmbeddingsHonouredBothWays();
    void configValuesOutOfRange_data();
    void configValuesOutOfRange();
    void settingsCheckedBeforeWork();
};

void TestInputValidation::tiedEmbeddingsUnderEitherName()
{
    const Model original = loadModel(test::realModelPath("stories260K-hf"));
    const MatrixRM reference = logitsOf(original);
    // The public TinyStories layout: only lm_head.weight kept, its alias recorded as safetensors' save_model does.
    const fs::path aliased = variant("lm-head-aliased", true, [](auto& t, auto& meta) {
        rename(t, "model.embed_tokens.weight", "lm_head.weight");
        meta["model.embed_tokens.weight"] = "lm_head.weight";
    });
    QVERIFY(identical(logitsOf(loadModel(aliased)), reference));
    // Only lm_head.weight, no metadata: tie_word_embeddings says it is the embedding.
    const fs::path bare = variant("lm-head-bare", true, [](auto& t, auto&) { rename(t, "model.embed_tokens.weight", "lm_head.weight"); });
    QVERIFY(identical(logitsOf(loadModel(bare)), reference));
    // The other direction: tie_word_embeddings false, lm_head.weight dropped and aliased to the embedding.
    const fs::path reverse = variant("embed-aliased", false, [](auto&, auto& meta) { meta["lm_head.weight"] = "model.embed_tokens.weight"; });
    const Model r = loadModel(reverse);
    QVERIFY(!r.config.tieEmbeddings);
    QVERIFY(identical(logitsOf(r), reference));
}

void TestInputValidation::tieWordEmbeddingsHonouredBothWays()
{
    const MatrixRM reference = logitsOf(loadModel(test::realModelPath("stories260K-hf")));
    // Untied with only the embedding stored: the output head is missing, and the message says why.
    const fs::path missing = variant("untied-missing", false, [](auto&, auto&) {});
    const std::string e = errorOf([&] { loadModel(missing); });
    QVERIFY2(e.find("missing tensor 'lm_head.weight'") != std::string::npos && e.find("tie_word_embeddings") != std::string::npos,
             e.c_str());
    // Untied with a distinct head: the head is used, not the embedding.
    auto withHead = [](auto& t, auto&) {
        Tensor head;
        for (const auto& [n, x] : t)
            if (n == "model.embed_tokens.weight")
                head = scaled(x, 2.0f);
        t.emplace_back("lm_head.weight", head);
    };
    const Model untied = loadModel(variant("untied-distinct", false, withHead));
    QVERIFY(untied.output.data() != untied.embedding.data());
    QVERIFY(!identical(logitsOf(untied), reference));
    // Tied with both stored: tying wins, as in Transformers.
    const Model tied = loadModel(variant("tied-both", true, withHead));
    QVERIFY(identical(logitsOf(tied), reference));
}

void TestInputValidation::configValuesOutOfRange_data()
{
    QTest::addColumn<QString>("change");
    QTest::addColumn<QString>("message");
    QTest::newRow("bos beyond the vocabulary") << R"({"bos_token_id": 99999})" << "bos token id 99999 is outside the vocabulary [0, 512)";
    QTest::newRow("eos beyond the vocabulary") << R"({"eos_token_id": [2, 70000]})" << "eos token id 70000 is outside the vocabulary [0, 512)";
    QTest::newRow("eos beyond int") << R"({"eos_token_id": 9999999999999})" << "eos token id";
    QTest::newRow("negative eos") << R"({"eos_token_id": -3})" << "eos token id -1";
    QTest::newRow("negative sliding window") << R"({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": -5})"
                                             << "sliding_window -5 is out of range [0, 2^30]";
    QTest::newRow("rope theta 0") << R"({"rope_theta": 0})" << "rope_theta must be greater than 1 and at most 1e12 (GGUF: rope.freq_base), got 0";
    QTest::newRow("rope theta huge") << R"({"rope_theta": 1e300})" << "at most 1e12";
    QTest::newRow("rope factor") << R"({"rope_scaling": {"rope_type": "linear", "factor": 1e30}})" << "rope scaling factor";
    QTest::newRow("context") << R"({"max_position_embeddings": 99999999999})" << "max_position_embeddings";
}

void TestInputValidation::configValuesOutOfRange()
{
    QFETCH(QString, change);
    QFETCH(QString, message);
    nlohmann::json config = nlohmann::json::parse(test::readTextFile(test::realModelPath("stories260K-hf") / "config.json"));
    config.update(nlohmann::json::parse(change.toStdString()));
    const std::string e = errorOf([&] { configFromHuggingFace(config, "/m/config.json"); });
    QVERIFY2(e.find(message.toStdString()) != std::string::npos && e.find("/m/config.json") != std::string::npos, e.c_str());
}

void TestInputValidation::settingsCheckedBeforeWork()
{
    const ModelConfig c = loadModel(test::realModelPath("stories260K-hf")).config; // hidden 64, 4 KV heads of 8
    ConversionSettings ok;
    QVERIFY(errorOf([&] { validateConversionSettings(c, ok); }).empty());
    auto refused = [&](const std::function<void(ConversionSettings&)>& change, const std::string& part) {
        ConversionSettings s;
        change(s);
        const std::string e = errorOf([&] { validateConversionSettings(c, s); });
        if (e.find(part) == std::string::npos)
            QTest::qFail(qPrintable(QStringLiteral("expected '%1' in '%2'").arg(QString::fromStdString(part), QString::fromStdString(e))),
                         __FILE__, __LINE__);
    };
    refused([](auto& s) { s.latentDim = 16777216; }, "--latent-dim 16777216 is outside the allowed range [1, 64]");
    refused([](auto& s) { s.latentDim = 9999; }, "--latent-dim 9999");
    refused([](auto& s) { s.method = LatentMethod::Split; s.latentDim = 1; }, "[2, ");
    refused([](auto& s) { s.ropePairs = 5; }, "--rope-pairs 5 is outside the allowed range [0, 4]");
    refused([](auto& s) { s.uniformStart = 4; }, "--uniform-start 4 is outside the allowed range [0, 3]");
    refused([](auto& s) { s.ropePairs = 4; s.targetSaving = 0.9; }, "--kv-saving");
    refused([](auto& s) { s.kvBudget = 1000000; }, "--kv-budget 1000000");
    refused([](auto& s) { s.latentPerLayer = {8, 8}; }, "per-layer latent widths list 2 layers");
    // The widest latent that still adds anything: the rank of [W_k_nope; W_v] (here hidden = 64).
    QCOMPARE(maxLatentWidth(c, LatentMethod::Joint, 0), std::int64_t(64));
    QCOMPARE(maxLatentWidth(c, LatentMethod::Joint, 1), std::int64_t(56));
    QCOMPARE(maxLatentWidth(c, LatentMethod::Key, 1), std::int64_t(24));
    ConversionSettings widest;
    widest.latentDim = 64;
    QVERIFY(errorOf([&] { validateConversionSettings(c, widest); }).empty());
}

QTEST_GUILESS_MAIN(TestInputValidation)
#include "tst_input_validation.moc"
