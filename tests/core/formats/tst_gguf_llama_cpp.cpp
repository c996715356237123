// Our GGUF exports in the real llama.cpp (node-llama-cpp 3.21.1, pinned in tests/llama_cpp; skipped, saying why,
// only where it is not installed). For the four real models exported as llama.cpp's `llama` architecture:
// llama.cpp tokenizes the prompts as we do, its greedy continuation equals ours for 40 tokens on every prompt, and
// its next-token distribution at every position of those sequences equals ours to 1e-4 (F32 weights and F32 KV
// cache on both sides; measured differences are printed). Q8_0 and Q4_0 exports of the same models, scored by
// llama.cpp on the same sequences, agree in top-1 with the F32 export on most positions, and on nearly all where
// the F32 choice is not a near-tie (measured, printed). The F32 side is our reader and engine on the very file
// llama.cpp runs (which gives the source model's logits bit for bit: tst_gguf_export). Tiny
// random models of every architecture we write (llama, mistral, qwen2 with biases, qwen3 with q/k norms) give
// llama.cpp the distributions ours gives; and the SentencePiece and byte-level BPE vocabularies we embed
// (each pre-tokenizer family llama.cpp names) tokenize in llama.cpp as the source tokenizer does.
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "core/formats/gguf_test_fixtures.h"
#include "core/formats/llama_cpp_harness.h"

#include "formats/gguf_export.h"
#include "formats/gguf_vocabulary.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"

#include <QDebug>

using namespace mla;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Greedy tokens compared per prompt, and the probability tolerance (F32 on both sides: the measured differences are
// around 1e-6, from float summation order; 1e-4 leaves room for other CPUs' SIMD paths and is still far below
// any difference a wrong weight, row order or scale would make).
constexpr int kGreedyTokens = 40;
constexpr double kProbabilityTolerance = 1e-4;
// A position is decisive when the F32 export's top-1 probability leads the runner-up's by this much.
constexpr double kDecisiveMargin = 0.02;

const std::vector<test::RealModelPrompts>& realModels()
{
    return test::llamaCppRealModels();
}

std::unique_ptr<Tokenizer> tokenizerOf(const std::string& name, const Model& model)
{
    return loadTokenizer(test::realModelTokenizerFile(name, model));
}

} // namespace

// All exports are written in initTestCase and run in ONE llama.cpp process (its start-up costs more than the tiny
// models' work); each test then checks its part of the answer.
class TestGgufLlamaCpp : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void realModelsAgree();
    void architecturesAgree();
    void vocabulariesTokenizeAlike();

private:
    struct PreparedReal {
        Model model;
        std::vector<std::vector<int>> prompts;     // BOS + prompt ids, and BOS alone
        std::vector<std::vector<int>> promptTexts; // our ids of each text, without BOS
        std::vector<std::vector<int>> greedy;      // ours
        std::size_t firstRun = 0;                  // F32, Q8_0, Q4_0 runs from here
    };
    void prepareRealModels();
    void prepareArchitectures();
    void prepareVocabularies();
    const json& run(std::size_t index) const { return m_result.output["runs"][index]; }

    fs::path m_dir;
    json m_job = {{"threads", 1}, {"runs", json::array()}};
    test::LlamaCppResult m_result;
    std::vector<PreparedReal> m_real;
    std::vector<Model> m_archModels;
    std::vector<std::vector<int>> m_archSequences;
    std::size_t m_firstArchRun = 0;
    std::vector<std::string> m_vocabLabels;
    std::vector<std::unique_ptr<Tokenizer>> m_vocabSources;
    std::vector<std::vector<std::string>> m_vocabTexts;
    std::size_t m_firstVocabRun = 0;
};

void TestGgufLlamaCpp::initTestCase()
{
    m_dir = test::scratchDir("llama-cpp");
    prepareRealModels();
    prepareArchitectures();
    prepareVocabularies();
    m_result = test::runLlamaCpp(m_job, m_dir);
}

void TestGgufLlamaCpp::prepareRealModels()
{
    for (const test::RealModelPrompts& rm : realModels()) {
        const Model source = test::loadRealModel(rm.name);
        PreparedReal p{{}, {}, {}, {}, m_job["runs"].size()};
        const auto tokenizer = tokenizerOf(rm.name, source);
        const int bos = *tokenizer->bosId();
        p.prompts.push_back({bos});
        for (const auto& text : rm.prompts) {
            std::vector<int> ids = tokenizer->encode(text, false);
            QVERIFY2(std::find(ids.begin(), ids.end(), 0) == ids.end(), "a prompt falls back to <unk>");
            p.promptTexts.push_back(ids);
            ids.insert(ids.begin(), bos);
            p.prompts.push_back(ids);
        }
        std::vector<json> sequences;
        for (const GgmlType type : {GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0}) {
            GgufExportOptions options;
            options.file = m_dir / (std::string(rm.name) + "-" + std::string(ggmlTypeTraits(type).userName) + ".gguf");
            options.weights = type;
            if (std::string(rm.name) == "xs260K")
                options.tokenizerFile = test::demoDir() / "tok512.bin";
            exportGguf(source, options);
            if (type == GgmlType::F32) {
                // Ours: our reader and engine on the very file llama.cpp runs (for an F32 export, the source's
                // logits bit for bit: tst_gguf_export).
                p.model = loadModel(options.file);
                const Transformer transformer(p.model);
                for (const auto& prompt : p.prompts)
                    p.greedy.push_back(test::ourGreedy(transformer, prompt, kGreedyTokens));
                for (std::size_t i = 0; i < p.prompts.size(); ++i) {
                    std::vector<int> s = p.prompts[i];
                    s.insert(s.end(), p.greedy[i].begin(), p.greedy[i].end());
                    sequences.push_back(s);
                }
            }
            json run = {{"model", options.file.string()}, {"score", {{"sequences", sequences}, {"top", 2}, {"full", type == GgmlType::F32}}}};
            if (type == GgmlType::F32) {
                run["tokenize"] = rm.prompts;
                json prompts = json::array();
                for (const auto& prompt : p.prompts)
                    prompts.push_back(prompt);
                run["generate"] = {{"prompts", prompts}, {"tokens", kGreedyTokens}};
            }
            m_job["runs"].push_back(run);
        }
        m_real.push_back(std::move(p));
    }
}


void TestGgufLlamaCpp::realModelsAgree()
{
    if (m_result.skipped)
        QSKIP(m_result.skipped->c_str());
    for (std::size_t m = 0; m < m_real.size(); ++m) {
        const PreparedReal& p = m_real[m];
        const std::string name = realModels()[m].name;
        const json& f32 = run(p.firstRun);
        // Tokenization of the prompt texts by the embedded vocabulary.
        for (std::size_t i = 0; i < p.promptTexts.size(); ++i)
            QCOMPARE(f32["tokens"][i].get<std::vector<int>>(), p.promptTexts[i]);
        // Greedy continuations.
        for (std::size_t i = 0; i < p.prompts.size(); ++i) {
            const auto theirs = f32["generated"][i].get<std::vector<int>>();
            QCOMPARE(static_cast<int>(theirs.size()), kGreedyTokens);
            QCOMPARE(theirs, p.greedy[i]);
        }
        // Next-token distributions at every position.
        const Transformer transformer(p.model);
        double worst = 0.0;
        int positions = 0;
        std::vector<std::vector<int>> f32Argmax;
        std::vector<std::vector<bool>> decisive; // F32's top-1 leads its runner-up by at least kDecisiveMargin
        for (std::size_t i = 0; i < p.prompts.size(); ++i) {
            std::vector<int> s = p.prompts[i];
            s.insert(s.end(), p.greedy[i].begin(), p.greedy[i].end());
            const MatrixRM ours = test::ourProbabilities(transformer, s);
            const json& theirs = f32["scores"][i];
            QCOMPARE(theirs.size(), s.size());
            worst = std::max(worst, test::maxProbabilityDifference(ours, theirs));
            positions += static_cast<int>(s.size());
            std::vector<int> argmax;
            std::vector<bool> clear;
            for (const auto& position : theirs) {
                argmax.push_back(position["argmax"].get<int>());
                clear.push_back(position["probs"][0].get<double>() - position["probs"][1].get<double>() >= kDecisiveMargin);
            }
            f32Argmax.push_back(argmax);
            decisive.push_back(clear);
        }
        QVERIFY2(worst <= kProbabilityTolerance, qPrintable(QString("%1: max |p - p_llama.cpp| = %2").arg(name.c_str()).arg(worst)));
        // Quantised exports: top-1 agreement with the F32 export, both in llama.cpp.
        // Over all positions, and over the decisive ones (where F32's choice is not a near-tie that any
        // perturbation flips: poem5L's greedy continuations spend most positions below 1% probability).
        double agreement[2] = {0.0, 0.0};
        double decisiveAgreement[2] = {0.0, 0.0};
        int decisivePositions = 0;
        for (int q = 0; q < 2; ++q) {
            const json& quantised = run(p.firstRun + 1 + static_cast<std::size_t>(q));
            int agree = 0;
            int agreeDecisive = 0;
            decisivePositions = 0;
            for (std::size_t i = 0; i < f32Argmax.size(); ++i) {
                for (std::size_t pos = 0; pos < f32Argmax[i].size(); ++pos) {
                    const bool same = quantised["scores"][i][pos]["argmax"].get<int>() == f32Argmax[i][pos];
                    agree += same;
                    if (decisive[i][pos]) {
                        ++decisivePositions;
                        agreeDecisive += same;
                    }
                }
            }
            agreement[q] = static_cast<double>(agree) / positions;
            decisiveAgreement[q] = static_cast<double>(agreeDecisive) / std::max(1, decisivePositions);
        }
        qInfo().noquote() << QString("%1: greedy %2 x %3 tokens equal; max |p - p_llama.cpp| %4 over %5 positions; "
                                     "top-1 vs F32 in llama.cpp, all / %6 decisive positions: Q8_0 %7 / %8, "
                                     "Q4_0 %9 / %10; KV cache %11 MiB (%12 cells)")
                                 .arg(name.c_str()).arg(p.prompts.size()).arg(kGreedyTokens).arg(worst, 0, 'g', 3)
                                 .arg(positions).arg(decisivePositions).arg(agreement[0], 0, 'f', 3)
                                 .arg(decisiveAgreement[0], 0, 'f', 3).arg(agreement[1], 0, 'f', 3)
                                 .arg(decisiveAgreement[1], 0, 'f', 3).arg(f32["kv_cache"]["mib"].get<double>())
                                 .arg(f32["kv_cache"]["cells"].get<int>());
        QVERIFY2(agreement[0] >= 0.5 && decisiveAgreement[0] >= 0.95,
                 qPrintable(QString("%1: Q8_0 top-1 agreement %2 / %3").arg(name.c_str()).arg(agreement[0]).arg(decisiveAgreement[0])));
        QVERIFY2(agreement[1] >= 0.5 && decisiveAgreement[1] >= 0.8,
                 qPrintable(QString("%1: Q4_0 top-1 agreement %2 / %3").arg(name.c_str()).arg(agreement[1]).arg(decisiveAgreement[1])));
    }
}

void TestGgufLlamaCpp::prepareArchitectures()
{
    m_firstArchRun = m_job["runs"].size();
    const fs::path tokenizer = test::demoDir() / "tok512.bin";
    for (const char* arch : {"llama", "mistral", "qwen2", "qwen3"}) {
        Model model = test::tinyModel(m_dir, arch, 512);
        GgufExportOptions options;
        options.file = m_dir / (std::string(arch) + ".gguf");
        options.tokenizerFile = tokenizer;
        exportGguf(model, options);
        std::vector<int> ids = {1};
        for (int i = 0; i < 24; ++i)
            ids.push_back(3 + (i * 131) % 500);
        m_job["runs"].push_back({{"model", options.file.string()}, {"score", {{"sequences", {ids}}, {"top", 1}, {"full", true}}}});
        m_archModels.push_back(std::move(model));
        m_archSequences.push_back(ids);
    }
}

void TestGgufLlamaCpp::architecturesAgree()
{
    if (m_result.skipped)
        QSKIP(m_result.skipped->c_str());
    for (std::size_t i = 0; i < m_archModels.size(); ++i) {
        const MatrixRM ours = test::ourProbabilities(Transformer(m_archModels[i]), m_archSequences[i]);
        const double worst = test::maxProbabilityDifference(ours, run(m_firstArchRun + i)["scores"][0]);
        qInfo().noquote() << QString("%1: max |p - p_llama.cpp| %2").arg(m_archModels[i].config.architecture.c_str()).arg(worst, 0, 'g', 3);
        QVERIFY2(worst <= kProbabilityTolerance, m_archModels[i].config.architecture.c_str());
    }
}

void TestGgufLlamaCpp::prepareVocabularies()
{
    m_firstVocabRun = m_job["runs"].size();
    const fs::path dir = m_dir / "vocabularies";
    struct Case {
        std::string label;
        fs::path tokenizer;
        std::int64_t vocab;
    };
    std::vector<Case> cases = {{"sentencepiece", test::sourceDir() / "data" / "tokenizers" / "tiny_bpe.model", 384},
                               {"poem5L tokenizer.bin", test::modelsDir() / "poem5L" / "poem_tok.bin", 2048}};
    for (const char* family : test::kFixturePreTokenizers)
        cases.push_back({family, test::writeBpeTokenizer(dir / family, family), test::fixtureBpeVocabSize()});
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const Case& c = cases[i];
        const Model model = test::tinyModel(dir, "llama", c.vocab, "model-" + std::to_string(i));
        GgufExportOptions options;
        options.file = dir / ("vocab-" + std::to_string(i) + ".gguf");
        options.tokenizerFile = c.tokenizer;
        exportGguf(model, options);
        m_vocabSources.push_back(loadTokenizer(c.tokenizer));
        std::vector<std::string> t;
        if (c.label == "poem5L tokenizer.bin") {
            // 床前明月光，疑是地上霜
            t = {"\xE5\xBA\x8A\xE5\x89\x8D\xE6\x98\x8E\xE6\x9C\x88\xE5\x85\x89\xEF\xBC\x8C\xE7\x96\x91\xE6\x98\xAF\xE5\x9C\xB0\xE4\xB8\x8A\xE9\x9C\x9C"};
        } else {
            t = tokenizerProbeTexts();
            if (c.label != "sentencepiece")
                t.push_back("<|im_start|>user\nHi there<|im_end|>\n<extra_word> 12345");
        }
        m_vocabLabels.push_back(c.label);
        m_vocabTexts.push_back(t);
        m_job["runs"].push_back({{"model", options.file.string()}, {"tokenize", t}});
    }
}

void TestGgufLlamaCpp::vocabulariesTokenizeAlike()
{
    if (m_result.skipped)
        QSKIP(m_result.skipped->c_str());
    for (std::size_t i = 0; i < m_vocabSources.size(); ++i) {
        for (std::size_t k = 0; k < m_vocabTexts[i].size(); ++k) {
            const auto ours = m_vocabSources[i]->encode(m_vocabTexts[i][k], false);
            const auto theirs = run(m_firstVocabRun + i)["tokens"][k].get<std::vector<int>>();
            if (ours != theirs)
                qWarning().noquote() << QString::fromStdString(m_vocabLabels[i]) << "text" << k;
            QCOMPARE(theirs, ours);
        }
    }
}

QTEST_GUILESS_MAIN(TestGgufLlamaCpp)
#include "tst_gguf_llama_cpp.moc"
