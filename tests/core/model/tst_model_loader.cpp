// loadModel, the one entry point for every checkpoint: format detection; Hugging Face configs of each supported
// architecture (llama, mistral, qwen2, qwen3) written here as small random checkpoints and read back with every
// field honoured; missing tensors and wrong shapes named exactly; inconsistent configs refused with the file named;
// sharded checkpoints (written by the project's own writers) loading to bit-identical logits.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "engine/transformer.h"
#include "formats/checkpoint_writer.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "util/error.h"

#include <fstream>
#include <functional>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

ModelConfig tinyConfig(const std::string& arch)
{
    ModelConfig c;
    c.architecture = arch;
    c.hidden = 32;
    c.ffn = 48;
    c.layers = 2;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 8;
    c.vocab = 64;
    c.maxPositions = 64;
    c.rmsEps = 1e-5;
    c.rope.theta = 10000.0;
    c.tieEmbeddings = true;
    c.bosId = 1;
    c.eosIds = {2};
    if (arch == "qwen2")
        c.qkvBias = true;
    if (arch == "qwen3")
        c.qkNorm = true;
    if (arch == "mistral")
        c.slidingWindow = 8;
    return c;
}

bool isNormRole(TensorRole r)
{
    return r == TensorRole::AttnNorm || r == TensorRole::FfnNorm || r == TensorRole::OutputNorm || r == TensorRole::QNorm
           || r == TensorRole::KNorm;
}

// Random weights for every planned tensor; returns them by name as written.
std::map<std::string, std::vector<float>> writeCheckpoint(const fs::path& folder, const ModelConfig& c, std::uint32_t seed,
                                                          std::optional<nlohmann::ordered_json> json = {},
                                                          std::uint64_t shardBytes = 0, DType dtype = DType::F32)
{
    std::map<std::string, std::vector<float>> written;
    CheckpointWriter writer(folder, c, json ? *json : configToHuggingFace(c), dtype, shardBytes);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    writer.writeTensors([&](const PlannedTensor& p, const std::string& name) {
        std::int64_t n = 1;
        for (auto d : p.shape)
            n *= d;
        std::vector<float> v(static_cast<std::size_t>(n));
        for (auto& x : v)
            x = isNormRole(p.role) ? 1.0f + 0.1f * u(rng) : 0.2f * u(rng);
        written[name] = v;
        return Tensor::fromFloats(DType::F32, p.shape, v.data());
    });
    writer.commit();
    return written;
}

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Rewrites a folder's model.safetensors after `edit`.
void rewriteWeights(const fs::path& folder, const std::function<void(NamedTensors&)>& edit)
{
    NamedTensors tensors;
    {
        const SafetensorsFile f = SafetensorsFile::open(folder / "model.safetensors");
        for (const auto& name : f.names()) {
            const Tensor t = f.tensor(name);
            const std::vector<float> v = t.toFloats();
            tensors.emplace_back(name, Tensor::fromFloats(t.dtype(), t.shape(), v.data()));
        }
    }
    edit(tensors);
    writeSafetensors(folder / "model.safetensors", tensors);
}

void rewriteConfig(const fs::path& folder, const std::function<void(nlohmann::json&)>& edit)
{
    nlohmann::json j = nlohmann::json::parse(test::readTextFile(folder / "config.json"));
    edit(j);
    test::writeTextFile(folder / "config.json", j.dump(2));
}

std::string loadError(const fs::path& path)
{
    try {
        loadModel(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string configError(const nlohmann::json& j)
{
    try {
        configFromHuggingFace(j, "/cfg/config.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

using mla::test::logitsOf;

std::vector<float> vec(const VectorF& v) { return {v.data(), v.data() + v.size()}; }

nlohmann::json baseJson()
{
    return nlohmann::json::parse(configToHuggingFace(tinyConfig("llama")).dump());
}

} // namespace

class TestModelLoader : public QObject {
    Q_OBJECT

private slots:
    void formatDetection();
    void architectures_data();
    void architectures();
    void configFieldsHonoured();
    void configDefaults();
    void inconsistentConfigs_data();
    void inconsistentConfigs();
    void configFileErrors();
    void missingAndWrongTensors();
    void shardedCheckpoints();
    void shardedRealShape();
    void halfPrecisionCheckpoints();
};

void TestModelLoader::formatDetection()
{
    const fs::path dir = test::scratchDir("detect");
    writeCheckpoint(dir / "hf", tinyConfig("llama"), 1);
    QCOMPARE(detectCheckpointFormat(dir / "hf"), std::string("safetensors"));
    QCOMPARE(detectCheckpointFormat(dir / "hf" / "model.safetensors"), std::string("safetensors"));
    QCOMPARE(detectCheckpointFormat(test::modelsDir() / "stories260K" / "stories260K.gguf"), std::string("gguf"));
    QCOMPARE(detectCheckpointFormat(test::demoDir() / "stories260K.bin"), std::string("llama2c"));
    // The GGUF is recognised by its magic, whatever its name.
    fs::copy_file(test::modelsDir() / "stories260K" / "stories260K.gguf", dir / "renamed.bin");
    QCOMPARE(detectCheckpointFormat(dir / "renamed.bin"), std::string("gguf"));
    QCOMPARE(loadModel(dir / "renamed.bin").format, std::string("gguf"));

    // Loading the folder or the .safetensors file inside it gives the same model.
    const Model a = loadModel(dir / "hf");
    const Model b = loadModel(dir / "hf" / "model.safetensors");
    QCOMPARE(a.format, std::string("safetensors"));
    QCOMPARE(a.sourceRopeLayout, std::string("half"));
    QCOMPARE(a.source, dir / "hf" / "model.safetensors");
    QVERIFY(logitsOf(a, {1, 5, 9}) == logitsOf(b, {1, 5, 9}));

    QVERIFY(loadError(dir / "absent").find((dir / "absent").string() + ": no such file or folder") == 0);
    fs::create_directories(dir / "empty");
    QVERIFY(loadError(dir / "empty").find("folder holds no config.json") != std::string::npos);
    test::writeTextFile(dir / "short.bin", "abc");
    QVERIFY(loadError(dir / "short.bin").find((dir / "short.bin").string() + ": file is too short") == 0);
    // A folder with a config.json but no weights.
    fs::create_directories(dir / "noweights");
    fs::copy_file(dir / "hf" / "config.json", dir / "noweights" / "config.json");
    QVERIFY2(loadError(dir / "noweights").find("no model.safetensors or model.safetensors.index.json") != std::string::npos,
             loadError(dir / "noweights").c_str());
    // A lone .safetensors file without a config.json beside it.
    fs::create_directories(dir / "lonely");
    fs::copy_file(dir / "hf" / "model.safetensors", dir / "lonely" / "model.safetensors");
    QVERIFY(loadError(dir / "lonely" / "model.safetensors").find("no config.json next to the safetensors weights") != std::string::npos);
}

void TestModelLoader::architectures_data()
{
    QTest::addColumn<QString>("arch");
    for (const char* a : {"llama", "mistral", "qwen2", "qwen3"})
        QTest::newRow(a) << QString(a);
}

void TestModelLoader::architectures()
{
    QFETCH(QString, arch);
    const ModelConfig c = tinyConfig(arch.toStdString());
    const fs::path folder = test::scratchDir("arch") / arch.toStdString();
    const auto written = writeCheckpoint(folder, c, 2);
    const Model m = loadModel(folder);
    QCOMPARE(m.config.architecture, arch.toStdString());
    QCOMPARE(m.config.qkvBias, arch == "qwen2");
    QCOMPARE(m.config.outputBias, false);
    QCOMPARE(m.config.qkNorm, arch == "qwen3");
    QCOMPARE(m.config.slidingWindow, std::int64_t(arch == "mistral" ? 8 : 0));
    QCOMPARE(m.config.headDim, std::int64_t(8));
    QCOMPARE(m.config.kvHeads, std::int64_t(2));
    QCOMPARE(m.config.attentionKind(), std::string("gqa"));
    QCOMPARE(m.config.kvElementsPerToken(), std::int64_t(2 * 2 * 2 * 8));

    // Every written tensor is in its slot, unchanged (the half layout needs no permutation).
    std::int64_t expectedParams = 0;
    for (const PlannedTensor& p : tensorPlan(m.config)) {
        const std::string name = *tensorName(p.role, TensorNaming::HuggingFace, p.layer);
        QVERIFY2(written.count(name), name.c_str());
        QCOMPARE(modelTensor(m, p.role, p.layer).toFloats(), written.at(name));
        expectedParams += static_cast<std::int64_t>(written.at(name).size());
    }
    QCOMPARE(m.parameterCount(), expectedParams);
    QCOMPARE(m.output.toFloats(), written.at("model.embed_tokens.weight")); // tied
    if (arch == "qwen2") {
        QCOMPARE(vec(m.layers[1].qBias), written.at("model.layers.1.self_attn.q_proj.bias"));
        QCOMPARE(vec(m.layers[1].kBias), written.at("model.layers.1.self_attn.k_proj.bias"));
        QCOMPARE(vec(m.layers[1].vBias), written.at("model.layers.1.self_attn.v_proj.bias"));
        QCOMPARE(m.layers[0].oBias.size(), Eigen::Index(0));
    }
    if (arch == "qwen3") {
        QCOMPARE(vec(m.layers[0].qNorm), written.at("model.layers.0.self_attn.q_norm.weight"));
        QCOMPARE(vec(m.layers[1].kNorm), written.at("model.layers.1.self_attn.k_norm.weight"));
    }
    // It runs.
    const MatrixRM logits = logitsOf(m, {1, 7, 3, 9});
    QCOMPARE(logits.rows(), Eigen::Index(4));
    QVERIFY(logits.allFinite());

    // The same config written through the synthetic writer with a custom tiny shape loads too.
    writeSyntheticCheckpoint({"tiny", "tiny", c}, SyntheticOptions{0, DType::BF16, 3, 0, {}}, folder.string() + "-synth");
    const Model s = loadModel(folder.string() + "-synth");
    QCOMPARE(s.config.qkvBias, c.qkvBias);
    QCOMPARE(s.config.qkNorm, c.qkNorm);
    QCOMPARE(s.config.slidingWindow, c.slidingWindow);
    QVERIFY(s.layers[0].q.dtype() == DType::BF16);
}

void TestModelLoader::configFieldsHonoured()
{
    const fs::path dir = test::scratchDir("fields");
    // Explicit head_dim different from hidden/heads, untied head, attention_bias and mlp_bias, rope settings.
    ModelConfig c = tinyConfig("llama");
    c.headDim = 16; // 4 heads x 16 = 64 != hidden 32
    c.tieEmbeddings = false;
    c.qkvBias = true;
    c.outputBias = true;
    c.mlpBias = true;
    c.rope.theta = 500000.0;
    c.rope.scaling = RopeScaling::Llama3;
    c.rope.factor = 8.0;
    c.rope.lowFreqFactor = 1.0;
    c.rope.highFreqFactor = 4.0;
    c.rope.originalMaxPositions = 16;
    c.rmsEps = 1e-6;
    c.eosIds = {2, 5};
    const auto written = writeCheckpoint(dir / "llama3", c, 4);
    const Model m = loadModel(dir / "llama3");
    QCOMPARE(m.config.headDim, std::int64_t(16));
    QCOMPARE(m.config.qDim(), std::int64_t(64));
    QCOMPARE(m.layers[0].q.shape(), std::vector<std::int64_t>({64, 32}));
    QCOMPARE(m.layers[0].o.shape(), std::vector<std::int64_t>({32, 64}));
    QVERIFY(!m.config.tieEmbeddings);
    QCOMPARE(m.output.toFloats(), written.at("lm_head.weight"));
    QVERIFY(m.config.qkvBias && m.config.outputBias && m.config.mlpBias);
    QCOMPARE(vec(m.layers[1].oBias), written.at("model.layers.1.self_attn.o_proj.bias"));
    QCOMPARE(vec(m.layers[1].downBias), written.at("model.layers.1.mlp.down_proj.bias"));
    QCOMPARE(m.config.rope.theta, 500000.0);
    QVERIFY(m.config.rope.scaling == RopeScaling::Llama3);
    QCOMPARE(m.config.rope.factor, 8.0);
    QCOMPARE(m.config.rope.originalMaxPositions, std::int64_t(16));
    QCOMPARE(m.config.rmsEps, 1e-6);
    QCOMPARE(m.config.eosIds, std::vector<int>({2, 5}));
    QVERIFY(logitsOf(m, {1, 2, 3}).allFinite());

    // Linear scaling, spelled with the older "type" key.
    nlohmann::json j = baseJson();
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    ModelConfig lin = configFromHuggingFace(j, "x");
    QVERIFY(lin.rope.scaling == RopeScaling::Linear);
    QCOMPARE(lin.rope.factor, 4.0);
    // "default" means none; null rope_scaling too.
    j["rope_scaling"] = {{"rope_type", "default"}};
    QVERIFY(configFromHuggingFace(j, "x").rope.scaling == RopeScaling::None);
    j["rope_scaling"] = nullptr;
    QVERIFY(configFromHuggingFace(j, "x").rope.scaling == RopeScaling::None);

    // attention_bias on qwen2 is not a key it honours (its q/k/v biases are always there, o_proj never has one).
    j = baseJson();
    j["model_type"] = "qwen2";
    j["attention_bias"] = true;
    const ModelConfig q2 = configFromHuggingFace(j, "x");
    QVERIFY(q2.qkvBias);
    QVERIFY(!q2.outputBias);
    // mistral's sliding_window: null means none; only mistral honours the key.
    j = baseJson();
    j["model_type"] = "mistral";
    j["sliding_window"] = nullptr;
    QCOMPARE(configFromHuggingFace(j, "x").slidingWindow, std::int64_t(0));
    j["sliding_window"] = 4096;
    QCOMPARE(configFromHuggingFace(j, "x").slidingWindow, std::int64_t(4096));
    j["model_type"] = "llama";
    QCOMPARE(configFromHuggingFace(j, "x").slidingWindow, std::int64_t(0));
}

void TestModelLoader::configDefaults()
{
    nlohmann::json j = {{"architectures", {"Qwen3ForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 128},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 8}, {"vocab_size", 100},
                        {"eos_token_id", {7, 8}}, {"bos_token_id", nullptr}};
    const ModelConfig c = configFromHuggingFace(j, "x");
    QCOMPARE(c.architecture, std::string("qwen3")); // from the class name
    QVERIFY(c.qkNorm);
    QCOMPARE(c.kvHeads, std::int64_t(8));           // default: MHA
    QCOMPARE(c.headDim, std::int64_t(8));           // hidden / heads
    QCOMPARE(c.rmsEps, 1e-6);
    QCOMPARE(c.rope.theta, 10000.0);
    QVERIFY(!c.tieEmbeddings);                      // LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config: false
    QVERIFY(!c.bosId.has_value());
    QCOMPARE(c.eosIds, std::vector<int>({7, 8}));
    QCOMPARE(c.attentionKind(), std::string("mha"));

    // Round trip through the writer's config.json.
    ModelConfig w = tinyConfig("mistral");
    w.rope.scaling = RopeScaling::Linear;
    w.rope.factor = 2.5;
    const ModelConfig r = configFromHuggingFace(nlohmann::json::parse(configToHuggingFace(w).dump()), "x");
    QCOMPARE(r.architecture, w.architecture);
    QCOMPARE(r.slidingWindow, w.slidingWindow);
    QCOMPARE(r.rope.factor, 2.5);
    QCOMPARE(r.headDim, w.headDim);
    QCOMPARE(r.kvHeads, w.kvHeads);
    QCOMPARE(r.bosId, w.bosId);
    QCOMPARE(r.tieEmbeddings, w.tieEmbeddings);
}

void TestModelLoader::inconsistentConfigs_data()
{
    QTest::addColumn<QByteArray>("json");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* name, const std::function<void(nlohmann::json&)>& edit, const char* expected) {
        nlohmann::json j = baseJson();
        edit(j);
        QTest::newRow(name) << QByteArray::fromStdString(j.dump()) << QString(expected);
    };
    row("heads do not divide hidden", [](auto& j) { j.erase("head_dim"); j["num_attention_heads"] = 6; j["num_key_value_heads"] = 6; },
        "6 attention heads do not divide hidden_size 32");
    row("kv heads do not divide heads", [](auto& j) { j["num_key_value_heads"] = 3; }, "3 key/value heads do not divide 4 attention heads");
    row("odd head_dim", [](auto& j) { j["head_dim"] = 7; }, "head size 7 is odd");
    row("zero heads", [](auto& j) { j["num_attention_heads"] = 0; }, "num_attention_heads must be positive");
    row("negative layers", [](auto& j) { j["num_hidden_layers"] = -2; }, "layer count must be positive, got -2");
    row("zero vocab", [](auto& j) { j["vocab_size"] = 0; }, "vocabulary size must be positive");
    row("zero kv heads", [](auto& j) { j["num_key_value_heads"] = 0; }, "");
    row("huge hidden", [](auto& j) { j["hidden_size"] = 1ll << 40; j["head_dim"] = 64; }, "implausibly large");
    row("huge layers", [](auto& j) { j["num_hidden_layers"] = 1000000; }, "implausibly large");
    row("missing hidden_size", [](auto& j) { j.erase("hidden_size"); }, "missing 'hidden_size'");
    row("missing vocab_size", [](auto& j) { j.erase("vocab_size"); }, "missing 'vocab_size'");
    row("hidden_size string", [](auto& j) { j["hidden_size"] = "32"; }, "'hidden_size' must be an integer");
    row("hidden_size fractional", [](auto& j) { j["hidden_size"] = 32.5; }, "'hidden_size' must be an integer");
    row("unknown model_type", [](auto& j) { j["model_type"] = "gpt2"; }, "unsupported model_type 'gpt2' (supported: llama, mistral, qwen2, qwen3, deepseek_v2, deepseek_v3)");
    row("no model_type", [](auto& j) { j.erase("model_type"); j.erase("architectures"); }, "unsupported model_type ''");
    row("gelu", [](auto& j) { j["hidden_act"] = "gelu"; }, "hidden_act 'gelu' is not supported");
    row("yarn", [](auto& j) { j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }, "rope_scaling type 'yarn' is not supported");
    row("rope factor zero", [](auto& j) { j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 0.0}}; }, "rope_scaling.factor must be positive");
    row("llama3 bad band", [](auto& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 1.0}}; },
        "high_freq_factor must exceed low_freq_factor");
    row("rope_scaling not object", [](auto& j) { j["rope_scaling"] = 3; }, "expected a JSON object at 'rope_scaling'");
    row("rope_theta 1", [](auto& j) { j["rope_theta"] = 1.0; }, "rope_theta must be greater than 1");
    row("rope_theta string", [](auto& j) { j["rope_theta"] = "1e4"; }, "'rope_theta' must be a number");
    row("eps zero", [](auto& j) { j["rms_norm_eps"] = 0.0; }, "rms_norm_eps");
    row("eps huge", [](auto& j) { j["rms_norm_eps"] = 5.0; }, "is out of range");
    row("sliding window per layer", [](auto& j) { j["use_sliding_window"] = true; }, "use_sliding_window is set");
    row("tie not bool", [](auto& j) { j["tie_word_embeddings"] = "yes"; }, "'tie_word_embeddings' must be true or false");
    row("bos outside vocab", [](auto& j) { j["bos_token_id"] = 64; }, "bos token id 64 is outside the vocabulary");
    row("eos not integer", [](auto& j) { j["eos_token_id"] = "2"; }, "'eos_token_id' must be an integer or a list of integers");
    row("eos list with string", [](auto& j) { j["eos_token_id"] = {2, "x"}; }, "'eos_token_id' must be an integer or a list of integers");
    row("negative positions", [](auto& j) { j["max_position_embeddings"] = -1; }, "max_position_embeddings must not be negative");
}

void TestModelLoader::inconsistentConfigs()
{
    QFETCH(QByteArray, json);
    QFETCH(QString, expected);
    const nlohmann::json j = nlohmann::json::parse(json.toStdString());
    const std::string message = configError(j);
    QVERIFY2(!message.empty(), "inconsistent config accepted");
    QVERIFY2(message.rfind("/cfg/config.json: ", 0) == 0, message.c_str());
    QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
    QVERIFY2(message.find('\n') == std::string::npos, message.c_str());

    // Through loadModel on a real folder whose config.json says this: the message names that config.json.
    const fs::path folder = test::scratchDir("inconsistent") / "m";
    writeCheckpoint(folder, tinyConfig("llama"), 5);
    test::writeTextFile(folder / "config.json", j.dump(2));
    const std::string fromLoader = loadError(folder);
    QVERIFY2(fromLoader.rfind((folder / "config.json").string() + ": ", 0) == 0, fromLoader.c_str());
    QVERIFY2(fromLoader.find(expected.toStdString()) != std::string::npos, fromLoader.c_str());
}

void TestModelLoader::configFileErrors()
{
    const fs::path folder = test::scratchDir("configfile") / "m";
    writeCheckpoint(folder, tinyConfig("llama"), 6);
    test::writeTextFile(folder / "config.json", "{\"hidden_size\": 32,");
    QVERIFY(loadError(folder).rfind((folder / "config.json").string() + ": invalid JSON", 0) == 0);
    test::writeTextFile(folder / "config.json", "[1, 2]");
    QVERIFY(loadError(folder).rfind((folder / "config.json").string() + ": expected a JSON object", 0) == 0);
    test::writeTextFile(folder / "config.json", "");
    QVERIFY(loadError(folder).rfind((folder / "config.json").string() + ": invalid JSON", 0) == 0);
}

void TestModelLoader::missingAndWrongTensors()
{
    const fs::path dir = test::scratchDir("tensors");
    const fs::path weights = dir / "m" / "model.safetensors";
    auto fresh = [&](const std::string& arch) {
        fs::remove_all(dir / "m");
        writeCheckpoint(dir / "m", tinyConfig(arch), 7);
    };
    auto drop = [](const std::string& name) {
        return [name](NamedTensors& t) { std::erase_if(t, [&](const auto& p) { return p.first == name; }); };
    };
    struct Case {
        const char* arch;
        std::function<void(NamedTensors&)> edit;
        std::string expected;
    };
    const std::vector<Case> cases = {
        {"llama", drop("model.layers.1.mlp.up_proj.weight"), "missing tensor 'model.layers.1.mlp.up_proj.weight' (up projection)"},
        {"llama", drop("model.embed_tokens.weight"), "missing tensor 'model.embed_tokens.weight' (token embedding)"},
        {"llama", drop("model.norm.weight"), "missing tensor 'model.norm.weight' (final norm)"},
        {"qwen2", drop("model.layers.0.self_attn.k_proj.bias"), "missing tensor 'model.layers.0.self_attn.k_proj.bias' (key bias)"},
        {"qwen3", drop("model.layers.1.self_attn.q_norm.weight"), "missing tensor 'model.layers.1.self_attn.q_norm.weight' (query norm)"},
        {"llama",
         [](NamedTensors& t) {
             for (auto& [name, tensor] : t)
                 if (name == "model.layers.0.self_attn.k_proj.weight") {
                     const auto v = tensor.toFloats();
                     tensor = Tensor::fromFloats(DType::F32, {32, 16}, v.data());
                 }
         },
         "tensor 'model.layers.0.self_attn.k_proj.weight' has wrong shape; expected [16, 32], got [32, 16]"},
        {"qwen2",
         [](NamedTensors& t) {
             for (auto& [name, tensor] : t)
                 if (name == "model.layers.1.self_attn.v_proj.bias") {
                     const auto v = tensor.toFloats();
                     tensor = Tensor::fromFloats(DType::F32, {4, 4}, v.data());
                 }
         },
         "tensor 'model.layers.1.self_attn.v_proj.bias' has wrong shape; expected [16], got [4, 4]"},
        {"llama",
         [](NamedTensors& t) {
             for (auto& [name, tensor] : t)
                 if (name == "model.embed_tokens.weight") {
                     const auto v = tensor.toFloats();
                     tensor = Tensor::fromFloats(DType::F32, {60, 32}, v.data());
                 }
         },
         "tensor 'model.embed_tokens.weight' has wrong shape; expected [64, 32], got [60, 32]"},
    };
    for (const Case& c : cases) {
        fresh(c.arch);
        rewriteWeights(dir / "m", c.edit);
        const std::string message = loadError(dir / "m");
        QVERIFY2(message == weights.string() + ": " + c.expected, message.c_str());
    }

    // The config says untied, the file has no lm_head.
    fresh("llama");
    rewriteConfig(dir / "m", [](nlohmann::json& j) { j["tie_word_embeddings"] = false; });
    QCOMPARE(loadError(dir / "m"), weights.string() + ": missing tensor 'lm_head.weight' (output head); config.json does not say "
                                                   "tie_word_embeddings: true, so the output head is not the embedding");
    // The config says qwen2 (biases), the file was written as llama.
    fresh("llama");
    rewriteConfig(dir / "m", [](nlohmann::json& j) { j["model_type"] = "qwen2"; });
    QCOMPARE(loadError(dir / "m"), weights.string() + ": missing tensor 'model.layers.0.self_attn.q_proj.bias' (query bias)");
    // The config says 3 layers, the file holds 2.
    fresh("llama");
    rewriteConfig(dir / "m", [](nlohmann::json& j) { j["num_hidden_layers"] = 3; });
    QCOMPARE(loadError(dir / "m"), weights.string() + ": missing tensor 'model.layers.2.input_layernorm.weight' (attention norm)");
    // The config says a larger hidden size.
    fresh("llama");
    rewriteConfig(dir / "m", [](nlohmann::json& j) { j["hidden_size"] = 48; });
    QCOMPARE(loadError(dir / "m"), weights.string() + ": tensor 'model.embed_tokens.weight' has wrong shape; expected [64, 48], got [64, 32]");
    // Extra tensors are ignored.
    fresh("llama");
    rewriteWeights(dir / "m", [](NamedTensors& t) {
        const float v[2] = {1, 2};
        t.emplace_back("model.rotary_emb.inv_freq", Tensor::fromFloats(DType::F32, {2}, v));
    });
    QCOMPARE(loadError(dir / "m"), std::string());
}

void TestModelLoader::shardedCheckpoints()
{
    const fs::path dir = test::scratchDir("sharded");
    for (const char* arch : {"llama", "qwen2", "qwen3"}) {
        ModelConfig c = tinyConfig(arch);
        c.tieEmbeddings = std::string(arch) != "qwen3";
        const SyntheticShape shape{"tiny", "tiny", c};
        const fs::path one = dir / (std::string(arch) + "-one");
        const fs::path many = dir / (std::string(arch) + "-many");
        writeSyntheticCheckpoint(shape, SyntheticOptions{0, DType::F32, 9, 0, {}}, one);
        writeSyntheticCheckpoint(shape, SyntheticOptions{0, DType::F32, 9, 8192, {}}, many);
        QVERIFY(fs::exists(one / "model.safetensors"));
        QVERIFY(!fs::exists(one / "model.safetensors.index.json"));
        QVERIFY(fs::exists(many / "model.safetensors.index.json"));
        QVERIFY(!fs::exists(many / "model.safetensors"));
        int shards = 0;
        for (const auto& e : fs::directory_iterator(many)) {
            if (e.path().extension() == ".safetensors") {
                ++shards;
                QVERIFY2(fs::file_size(e.path()) <= 8192 + 4096, e.path().c_str()); // data within the limit + header
            }
        }
        QVERIFY(shards > 3);
        char first[64];
        std::snprintf(first, sizeof first, "model-00001-of-%05d.safetensors", shards);
        QVERIFY2(fs::exists(many / first), first);
        const nlohmann::json index = nlohmann::json::parse(test::readTextFile(many / "model.safetensors.index.json"));
        QCOMPARE(index["weight_map"].size(), tensorPlan(c).size());

        const Model a = loadModel(one);
        const Model b = loadModel(many);
        const Model b2 = loadModel(many / "model.safetensors.index.json");
        QCOMPARE(a.parameterCount(), b.parameterCount());
        const std::vector<int> ids = {1, 10, 20, 30, 40, 50, 60, 3};
        const MatrixRM la = logitsOf(a, ids);
        QVERIFY(la == logitsOf(b, ids));
        QVERIFY(la == logitsOf(b2, ids));
    }

    // A shard gone missing, or listed wrongly, is an error naming the file.
    const fs::path many = dir / "llama-many";
    const nlohmann::json index = nlohmann::json::parse(test::readTextFile(many / "model.safetensors.index.json"));
    const fs::path second = many / index["weight_map"]["model.layers.0.self_attn.q_proj.weight"].get<std::string>();
    QVERIFY(second.filename() != "model-00001-of-00001.safetensors");
    QVERIFY(fs::exists(second));
    fs::rename(second, dir / "moved.safetensors");
    const std::string message = loadError(many);
    QVERIFY2(message.rfind(second.string() + ": cannot open", 0) == 0, message.c_str());
    fs::rename(dir / "moved.safetensors", second);
    // A truncated shard.
    const std::string bytes = test::readTextFile(second);
    test::writeTextFile(second, bytes.substr(0, bytes.size() - 10));
    const std::string truncated = loadError(many);
    QVERIFY2(truncated.rfind(second.string() + ": ", 0) == 0 && truncated.find("beyond the data section") != std::string::npos,
             truncated.c_str());
}

void TestModelLoader::shardedRealShape()
{
    // The synth command's real shapes, cut to one layer: SmolLM-135M in BF16, sharded at 8 MiB (the 56 MiB embedding
    // gets a shard of its own), loads with the published shape and the same logits as unsharded.
    const fs::path dir = test::scratchDir("smollm");
    const SyntheticShape& shape = syntheticShape("smollm-135m");
    writeSyntheticCheckpoint(shape, SyntheticOptions{1, DType::BF16, 1, 0, {}}, dir / "one");
    writeSyntheticCheckpoint(shape, SyntheticOptions{1, DType::BF16, 1, 8ull << 20, {}}, dir / "many");
    const Model a = loadModel(dir / "one");
    const Model b = loadModel(dir / "many");
    QCOMPARE(a.config.hidden, std::int64_t(576));
    QCOMPARE(a.config.heads, std::int64_t(9));
    QCOMPARE(a.config.kvHeads, std::int64_t(3));
    QCOMPARE(a.config.headDim, std::int64_t(64));
    QCOMPARE(a.config.vocab, std::int64_t(49152));
    QCOMPARE(a.config.layers, std::int64_t(1));
    QVERIFY(a.embedding.dtype() == DType::BF16);
    QVERIFY(fs::exists(dir / "many" / "model.safetensors.index.json"));
    QVERIFY(fs::exists(dir / "many" / "model-00002-of-00002.safetensors") || fs::exists(dir / "many" / "model-00002-of-00003.safetensors"));
    const std::vector<int> ids = {0, 100, 2000, 30000, 49151};
    QVERIFY(logitsOf(a, ids) == logitsOf(b, ids));
    QVERIFY_THROWS_EXCEPTION(Error, syntheticShape("gpt-5"));
}

void TestModelLoader::halfPrecisionCheckpoints()
{
    // The same random weights written as F32, F16 and BF16: each loads in its own dtype and its logits are close to
    // the F32 ones (within the rounding of the weights), never identical for BF16.
    const fs::path dir = test::scratchDir("dtypes");
    const ModelConfig c = tinyConfig("qwen2");
    writeCheckpoint(dir / "f32", c, 8, {}, 0, DType::F32);
    writeCheckpoint(dir / "f16", c, 8, {}, 0, DType::F16);
    writeCheckpoint(dir / "bf16", c, 8, {}, 0, DType::BF16);
    const Model a = loadModel(dir / "f32");
    const Model h = loadModel(dir / "f16");
    const Model b = loadModel(dir / "bf16");
    QVERIFY(h.layers[0].q.dtype() == DType::F16);
    QVERIFY(b.layers[0].q.dtype() == DType::BF16);
    QCOMPARE(nlohmann::json::parse(test::readTextFile(dir / "bf16" / "config.json"))["torch_dtype"].get<std::string>(), std::string("bfloat16"));
    const std::vector<int> ids = {1, 4, 9, 16, 25, 36};
    const MatrixRM la = logitsOf(a, ids), lh = logitsOf(h, ids), lb = logitsOf(b, ids);
    const double scale = la.cwiseAbs().maxCoeff();
    QVERIFY((la - lh).cwiseAbs().maxCoeff() < 1e-2 * scale);
    QVERIFY((la - lb).cwiseAbs().maxCoeff() < 5e-2 * scale);
    QVERIFY((la - lb).cwiseAbs().maxCoeff() > 0.0);
}

QTEST_GUILESS_MAIN(TestModelLoader)
#include "tst_model_loader.moc"
