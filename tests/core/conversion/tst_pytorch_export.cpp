// The PyTorch side of an export (core/conversion/pytorch_export.h, resources/modeling_mla.py): every MLA export carries
// the modeling file and the recovery recipe, names its own architecture, and the PyTorch model it describes computes
// our engine's logits, expanded and absorbed, with an absorbed cache of only the latents and the RoPE keys.
#include "common/model_fixtures.h"
#include "common/python_torch.h"
#include "common/test_support.h"
#include "conversion/pytorch_export.h"
#include "engine/kv_cache.h"
#include "engine/transformer.h"
#include "model/mla_model_type.h"
#include "model/model_loader.h"
#include "tools/hf_parity_shapes.h"
#include "util/error.h"

#include <QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

using namespace mla;
using nlohmann::json;

namespace {

const std::filesystem::path kRepo = test::sourceDir().parent_path();

struct ParityCase {
    std::string name;
    std::filesystem::path source;
    std::vector<std::string> convert; // CLI flags after --out
    bool sampledIds = true;           // ids sampled from the original (real models) or uniform (random models)
};

void convertWithCli(const std::filesystem::path& source, const std::filesystem::path& out, const std::vector<std::string>& flags)
{
    std::vector<std::string> args{"convert", source.string(), "--out", out.string(), "--quiet", "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    const test::ProcessResult r = test::runCli(args, 300000);
    if (r.exitCode != 0 || r.crashed)
        qFatal("convert %s failed (%d): %s", source.string().c_str(), r.exitCode, r.err.c_str());
}

void writeFloats(const std::filesystem::path& path, const MatrixRM& m)
{
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(float)));
}

std::vector<int> caseIds(const ParityCase& c, const Model& original, int length)
{
    if (c.sampledIds) {
        std::vector<int> ids = test::sampleSequences(Transformer(original), 1, length, 11)[0];
        ids.resize(static_cast<std::size_t>(length));
        return ids;
    }
    std::mt19937 rng(5);
    std::vector<int> ids{1};
    while (static_cast<int>(ids.size()) < length)
        ids.push_back(static_cast<int>(rng() % static_cast<unsigned>(original.config.vocab)));
    return ids;
}

// In the anonymous namespace with its cases' type (a unity batch would otherwise warn of a field of an internal type).
class TestPytorchExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void exportCarriesThePytorchFiles();
    void configNamesItsOwnArchitecture();
    void mlaModelTypeWithoutBaseIsRefused();
    void torchLogitsMatchTheEngine();

private:
    std::filesystem::path m_dir;
    std::vector<ParityCase> m_cases;
};

} // namespace

void TestPytorchExport::initTestCase()
{
    m_dir = test::scratchDir("pytorch-export");
    const auto tiny = m_dir / "tiny";
    std::filesystem::create_directories(tiny);
    for (const auto& shape : test::tinyShapes()) {
        if (shape.name != "tiny-qwen3") // per-head q/k norms cannot be converted
            test::writeTinyCheckpoint(shape, tiny / shape.name);
    }
    // Every latent method, per-layer widths and pairs (best), GQA and MHA, Qwen2 biases with tied embeddings, a
    // sliding window shorter than the sequence, llama3 RoPE scaling, and a layer keeping every pair.
    const std::vector<std::string> fast{"--calib-samples", "4", "--calib-seq-len", "64"};
    auto with = [&](std::vector<std::string> a) {
        a.insert(a.end(), fast.begin(), fast.end());
        return a;
    };
    auto flags = [](const char* strategy, const char* pairs, const char* svd, const char* latent) {
        std::vector<std::string> a{"--rope-strategy", strategy, "--rope-pairs", pairs, "--svd", svd};
        if (*latent)
            a.insert(a.end(), {"--latent-dim", latent});
        return a;
    };
    m_cases = {
        {"stories260K-best", test::realModelPath("stories260K"), with({"--preset", "best", "--kv-saving", "0.75"})},
        {"aidreams260K-paper", test::realModelPath("aidreams260K"), with({"--preset", "paper", "--kv-saving", "0.75"})},
        {"poem5L-split", test::realModelPath("poem5L"), flags("uniform", "1", "split", "36")},
        {"xs260K-key", test::realModelPath("xs260K"), flags("low", "1", "key", "12")},
        {"xs260K-value", test::realModelPath("xs260K"), flags("high", "2", "value", "12")},
        {"stories260K-none", test::realModelPath("stories260K-hf"), flags("uniform", "2", "none", "")},
        {"stories260K-allpairs", test::realModelPath("stories260K"), flags("high", "4", "joint", "16")},
        {"tiny-qwen2", tiny / "tiny-qwen2", flags("uniform", "2", "joint", "24"), false},
        {"tiny-mistral", tiny / "tiny-mistral", flags("high", "1", "joint", "20"), false},
        {"tiny-llama3", tiny / "tiny-llama3", flags("low", "3", "split", "32"), false},
    };
    // The sanitizer tree skips the PyTorch run, so it converts only what the other tests read.
    if (test::kUnderSanitizer) {
        std::erase_if(m_cases, [](const ParityCase& c) {
            return c.name != "xs260K-key" && c.name != "tiny-qwen2" && c.name != "tiny-mistral";
        });
    }
    for (const auto& c : m_cases)
        convertWithCli(c.source, m_dir / c.name / "model", c.convert);
}

void TestPytorchExport::exportCarriesThePytorchFiles()
{
    const auto exported = m_dir / "xs260K-key" / "model";
    for (const char* name : {"modeling_mla.py", "recovery/distill.py", "recovery/deepspeed_config.json", "recovery/README.md"}) {
        const std::string carried = test::readTextFile(exported / name);
        QVERIFY2(!carried.empty(), name);
        QCOMPARE(carried, test::readTextFile(kRepo / "resources" / name)); // byte for byte what the repository holds
        QCOMPARE(embeddedFile(name), carried);
    }
    QCOMPARE(pytorchExportFiles().size(), std::size_t(4));
    QVERIFY_THROWS_EXCEPTION(Error, embeddedFile("nope.py"));
}

void TestPytorchExport::configNamesItsOwnArchitecture()
{
    for (const auto& [name, base] : {std::pair{"xs260K-key", "llama"}, {"tiny-qwen2", "qwen2"}, {"tiny-mistral", "mistral"}}) {
        const auto folder = m_dir / name / "model";
        const json config = json::parse(test::readTextFile(folder / "config.json"));
        QCOMPARE(config["model_type"].get<std::string>(), std::string(kMlaModelType));
        QCOMPARE(config["architectures"], json::array({std::string(kMlaArchitecture)}));
        QCOMPARE(config["auto_map"]["AutoConfig"].get<std::string>(), std::string("modeling_mla.MlaConfig"));
        QCOMPARE(config["auto_map"]["AutoModelForCausalLM"].get<std::string>(), std::string("modeling_mla.MlaForCausalLM"));
        QCOMPARE(config["mha2mla"]["base_model_type"].get<std::string>(), std::string(base));
        // Our loader reads it back as the architecture it was converted from, with its MLA layout.
        const Model m = loadModel(folder);
        QCOMPARE(m.config.architecture, std::string(base));
        QVERIFY(m.config.isMla());
    }
    // The source architecture's quirks survive: Qwen2's biases, Mistral's window.
    QVERIFY(loadModel(m_dir / "tiny-qwen2" / "model").config.qkvBias);
    QCOMPARE(loadModel(m_dir / "tiny-mistral" / "model").config.slidingWindow, std::int64_t(16));
}

void TestPytorchExport::mlaModelTypeWithoutBaseIsRefused()
{
    const auto folder = m_dir / "no-base";
    std::filesystem::create_directories(folder);
    const auto source = m_dir / "xs260K-key" / "model";
    std::filesystem::copy_file(source / "model.safetensors", folder / "model.safetensors");
    json config = json::parse(test::readTextFile(source / "config.json"));
    config["mha2mla"].erase("base_model_type");
    test::writeTextFile(folder / "config.json", config.dump(2));
    try {
        loadModel(folder);
        QFAIL("a model_type of mha2mla without mha2mla.base_model_type loaded");
    } catch (const Error& e) {
        const std::string what = e.what();
        QVERIFY2(what.find("config.json") != std::string::npos && what.find("base_model_type") != std::string::npos, e.what());
    }
}

void TestPytorchExport::torchLogitsMatchTheEngine()
{
    MLA_REQUIRE_TORCH();
    constexpr int kTokens = 24; // longer than tiny-mistral's window of 16, and cheap: prefill 12, then 12 decode steps per form
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> expectedBytes; // absorbed, expanded per token
    std::map<std::string, ModelConfig> configs;
    for (const auto& c : m_cases) {
        const auto dir = m_dir / c.name;
        const Model original = loadModel(c.source);
        const std::vector<int> ids = caseIds(c, original, kTokens);
        std::string text;
        for (int id : ids)
            text += std::to_string(id) + " ";
        test::writeTextFile(dir / "ids.txt", text);
        const Model converted = loadModel(dir / "model");
        for (const MlaForm form : {MlaForm::Absorbed, MlaForm::Expanded}) {
            const Transformer t(converted, form);
            KvCache cache = t.newCache(kTokens);
            writeFloats(dir / (form == MlaForm::Absorbed ? "logits_absorbed.f32" : "logits_expanded.f32"),
                        t.forward(ids, cache, Logits::All));
            const std::int64_t bytes = static_cast<std::int64_t>(cache.bytesPerToken());
            (form == MlaForm::Absorbed ? expectedBytes[c.name].first : expectedBytes[c.name].second) = bytes;
        }
        configs[c.name] = converted.config;
    }
    // A damaged copy: the tensor data cut short, so that offsets point past the end of the file.
    const auto damaged = m_dir / "damaged";
    std::filesystem::create_directories(damaged);
    const auto good = m_dir / "xs260K-key" / "model";
    std::filesystem::copy_file(good / "config.json", damaged / "config.json");
    std::filesystem::copy_file(good / "modeling_mla.py", damaged / "modeling_mla.py");
    std::filesystem::copy_file(good / "model.safetensors", damaged / "model.safetensors");
    std::filesystem::resize_file(damaged / "model.safetensors", std::filesystem::file_size(good / "model.safetensors") - 100);

    const test::ProcessResult r = test::runProgram(test::pythonTorch().python,
        {(test::sourceDir() / "tools" / "torch_parity.py").string(), m_dir.string(), "--damaged", damaged.string()}, 600000);
    QVERIFY2(r.exitCode == 0 && !r.crashed, r.err.c_str());
    std::istringstream lines(r.out);
    std::string line;
    std::set<std::string> seen;
    while (std::getline(lines, line)) {
        const json j = json::parse(line);
        if (j.contains("damaged")) {
            const std::string error = j["error"].get<std::string>();
            QVERIFY2(error.find("model.safetensors") != std::string::npos && error.find("outside") != std::string::npos,
                     error.c_str());
            seen.insert("damaged");
            continue;
        }
        const std::string name = j["case"].get<std::string>();
        const ModelConfig& c = configs.at(name);
        qInfo("%s: rel absorbed %.2e (decode %.2e), expanded %.2e (decode %.2e), cache %lld / %lld bytes per token",
              name.c_str(), j["rel_absorbed"].get<double>(), j["rel_absorbed_decode"].get<double>(),
              j["rel_expanded"].get<double>(), j["rel_expanded_decode"].get<double>(),
              static_cast<long long>(j["cache_bytes_absorbed"].get<std::int64_t>() / kTokens),
              static_cast<long long>(j["cache_bytes_expanded"].get<std::int64_t>() / kTokens));
        for (const char* key : {"rel_absorbed", "rel_absorbed_decode", "rel_expanded", "rel_expanded_decode"})
            QVERIFY2(j[key].get<double>() <= 1e-4, (name + " " + key + " " + j[key].dump()).c_str());
        QCOMPARE(j["argmax_absorbed"].get<double>(), 1.0);
        QCOMPARE(j["argmax_expanded"].get<double>(), 1.0);
        // The absorbed cache holds the latents and the RoPE keys and nothing else: per layer exactly the elements the
        // method counts, the same bytes as the engine's cache, a fraction of the expanded (original-size) cache.
        const auto widths = j["cache_widths_absorbed"];
        QCOMPARE(static_cast<std::int64_t>(widths.size()), c.layers);
        for (std::int64_t l = 0; l < c.layers; ++l) {
            const MlaLayerConfig& m = c.mla->layers[static_cast<std::size_t>(l)];
            const std::int64_t rope = c.kvHeads * 2 * m.ropePairs();
            QCOMPARE(widths[static_cast<std::size_t>(l)][0].get<std::int64_t>(), rope);
            QCOMPARE(widths[static_cast<std::size_t>(l)][1].get<std::int64_t>(), m.cacheElements(c.kvHeads, c.headDim) - rope);
        }
        QCOMPARE(j["cache_bytes_absorbed"].get<std::int64_t>(), kTokens * c.kvElementsPerToken() * 4);
        QCOMPARE(j["cache_bytes_absorbed"].get<std::int64_t>(), kTokens * expectedBytes[name].first);
        QCOMPARE(j["cache_bytes_expanded"].get<std::int64_t>(), kTokens * c.layers * 2 * c.kvDim() * 4);
        QCOMPARE(j["cache_bytes_expanded"].get<std::int64_t>(), kTokens * expectedBytes[name].second);
        QCOMPARE(j["promised_elements_absorbed"].get<std::int64_t>(), c.kvElementsPerToken());
        if (j.contains("rel_auto")) { // Hugging Face transformers is installed: its loading path too
            qInfo("%s: transformers %s loads %s, rel %.2e, generate matches: %s, without trust_remote_code: %s", name.c_str(),
                  j["transformers"].get<std::string>().c_str(), j["auto_class"].get<std::string>().c_str(),
                  j["rel_auto"].get<double>(), j["generate_matches"].get<bool>() ? "yes" : "no",
                  j["auto_without_remote_code"].get<std::string>().c_str());
            QVERIFY(j["rel_auto"].get<double>() <= 1e-4);
            QVERIFY(j["generate_matches"].get<bool>());
            QVERIFY(j["auto_without_remote_code"].get<std::string>().rfind("refused", 0) == 0);
        }
        seen.insert(name);
    }
    QCOMPARE(seen.size(), m_cases.size() + 1);
}

QTEST_GUILESS_MAIN(TestPytorchExport)
#include "tst_pytorch_export.moc"
