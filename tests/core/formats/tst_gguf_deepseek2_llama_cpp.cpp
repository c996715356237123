// Converted models in the real llama.cpp (node-llama-cpp 3.21.1, pinned in tests/llama_cpp; skipped, saying why,
// only where it is not installed). The four real models, converted to the DeepSeek-V3 layout at the default 75% KV
// saving and exported as llama.cpp's deepseek2 (pipeline::exportConversionGguf): llama.cpp's greedy continuation
// equals ours for 32 tokens on every prompt, its next-token distribution at every position equals ours to 1e-4 (our
// reader and engine on the very file llama.cpp runs; F32 weights and cache on both sides), Q8_0 and Q4_0 exports agree
// in top-1 with the F32 one on most positions, and the KV buffer llama.cpp allocates for the export is the original's
// times the ratio of values cached per token. Random DeepSeek-layout models (half-layout rope reordered on export, a
// query latent, 26 blocks, which llama.cpp takes for DeepSeek-V2-Lite) and llama.cpp's own deepseek2 files (written by
// its gguf-py: dense, lite, q-lora, the older attn_kv_b layout) give llama.cpp's distributions in our engine.
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "core/formats/llama_cpp_harness.h"

#include "formats/gguf_export.h"
#include "model/model_loader.h"
#include "pipeline/convert.h"
#include "pipeline/export_gguf.h"

#include <QDebug>

using namespace mla;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kDeepseekGreedyTokens = 32;
// F32 on both sides; see tst_gguf_llama_cpp for why 1e-4.
constexpr double kDeepseekProbabilityTolerance = 1e-4;
constexpr double kDeepseekDecisiveMargin = 0.02;

std::vector<int> deepseekLlamaCppIds(std::int64_t vocab, int count)
{
    std::vector<int> ids = {1};
    for (int i = 1; i < count; ++i)
        ids.push_back(3 + static_cast<int>((i * 131) % (vocab - 3)));
    return ids;
}

} // namespace

// Everything is written in initTestCase and run in ONE llama.cpp process.
class TestGgufDeepseek2LlamaCpp : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void convertedRealModelsAgree();
    void deepSeekLayoutsAgree();

private:
    struct PreparedReal {
        std::string name;
        Model exported;                        // our reader on the F32 export
        Model exportedQ4;                      // and on the Q4_0 export
        std::vector<std::vector<int>> prompts; // BOS + prompt ids, and BOS alone
        std::vector<std::vector<int>> greedy;  // ours
        std::size_t firstRun = 0;              // original, F32, Q8_0, Q4_0
        std::int64_t kvValues = 0, originalKvValues = 0;
        double inMemoryDifference = 0.0;       // max |logit difference| / max |logit|, export vs conversion in memory
    };
    const json& run(std::size_t index) const { return m_result.output["runs"][index]; }

    fs::path m_dir;
    json m_job = {{"threads", 1}, {"runs", json::array()}};
    test::LlamaCppResult m_result;
    std::vector<PreparedReal> m_real;
    std::vector<std::string> m_layoutLabels;
    std::vector<Model> m_layoutModels;
    std::vector<std::vector<int>> m_layoutSequences;
    std::size_t m_firstLayoutRun = 0;
};

void TestGgufDeepseek2LlamaCpp::initTestCase()
{
    if (test::underAddressSanitizer())
        QSKIP("the agreement with llama.cpp is checked in the ordinary build (four conversions run past the time limit "
              "under AddressSanitizer); the deepseek2 writer and reader run there in tst_gguf_deepseek2_export");
    m_dir = test::scratchDir("llama-cpp-deepseek2");
    for (const test::RealModelPrompts& rm : test::llamaCppRealModels()) {
        pipeline::OpenRequest request;
        request.model = test::realModelPath(rm.name);
        request.tokenizer = test::realModelTokenizerFile(rm.name, test::loadRealModel(rm.name));
        const pipeline::OpenedModel opened = pipeline::openModel(request, ExecutionContext());
        Settings settings;
        settings.conversion.target = ConversionTarget::DeepSeekV3;
        settings.calibration.samples = 4; // the layout is what is checked here, not the fit's quality
        settings.calibration.sequenceLength = 128;
        const pipeline::ConversionOutcome conversion = pipeline::convertInMemory(opened, nullptr, settings, ExecutionContext());

        PreparedReal p;
        p.name = rm.name;
        p.firstRun = m_job["runs"].size();
        p.originalKvValues = opened.model->config.kvElementsPerToken();
        p.kvValues = conversion.converted->config.kvElementsPerToken();
        const int bos = *opened.tokenizer->bosId();
        p.prompts.push_back({bos});
        for (const auto& text : rm.prompts) {
            std::vector<int> ids = opened.tokenizer->encode(text, false);
            ids.insert(ids.begin(), bos);
            p.prompts.push_back(ids);
        }

        GgufExportOptions original;
        original.file = m_dir / (p.name + "-original.gguf");
        original.overwrite = true;
        pipeline::exportGguf(opened, original, ExecutionContext());
        std::vector<json> sequences;
        json longest = json::array();
        for (const GgmlType type : {GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0}) {
            GgufExportOptions options;
            options.file = m_dir / (p.name + "-mla-" + std::string(ggmlTypeTraits(type).userName) + ".gguf");
            options.weights = type;
            options.overwrite = true;
            pipeline::exportConversionGguf(opened, conversion, options, std::nullopt, ExecutionContext());
            if (type == GgmlType::Q4_0)
                p.exportedQ4 = loadModel(options.file);
            if (type == GgmlType::F32) {
                p.exported = loadModel(options.file);
                const Transformer transformer(p.exported);
                for (const auto& prompt : p.prompts) {
                    p.greedy.push_back(test::ourGreedy(transformer, prompt, kDeepseekGreedyTokens));
                    std::vector<int> s = prompt;
                    s.insert(s.end(), p.greedy.back().begin(), p.greedy.back().end());
                    sequences.push_back(s);
                }
                // The export against the conversion in memory: logits over the source vocabulary (an export may add
                // byte tokens after it), relative to their largest magnitude. llama.cpp normalises the latent with
                // the model's rms eps where the conversion used transformers' 1e-6.
                const Transformer inMemory(*conversion.converted);
                const Eigen::Index vocab = conversion.converted->config.vocab;
                for (const auto& s : sequences) {
                    const MatrixRM a = test::sequenceLogits(transformer, s).leftCols(vocab);
                    const MatrixRM b = test::sequenceLogits(inMemory, s);
                    p.inMemoryDifference = std::max(p.inMemoryDifference, static_cast<double>((a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff()));
                }
                longest = sequences.back();
            }
            if (type == GgmlType::F32 && m_job["runs"].size() == p.firstRun) {
                // The original first, on the same sequences: its KV buffer is the baseline.
                m_job["runs"].push_back({{"model", original.file.string()}, {"score", {{"sequences", {longest}}, {"top", 1}}}});
            }
            json run = {{"model", options.file.string()}, {"score", {{"sequences", sequences}, {"top", 2}, {"full", type != GgmlType::Q8_0}}}};
            if (type == GgmlType::F32) {
                json prompts = json::array();
                for (const auto& prompt : p.prompts)
                    prompts.push_back(prompt);
                run["generate"] = {{"prompts", prompts}, {"tokens", kDeepseekGreedyTokens}};
                // The same context as the original's run, so the KV buffers compare.
                run["context_size"] = 256;
            }
            m_job["runs"].push_back(run);
        }
        m_job["runs"][p.firstRun]["context_size"] = 256;
        m_real.push_back(std::move(p));
    }

    // DeepSeek layouts beyond what the conversion writes, random weights, and llama.cpp's own files.
    m_firstLayoutRun = m_job["runs"].size();
    auto addLayout = [&](const std::string& label, const Model& model, const fs::path& file) {
        const std::vector<int> ids = deepseekLlamaCppIds(model.config.vocab, 24);
        m_job["runs"].push_back({{"model", file.string()}, {"score", {{"sequences", {ids}}, {"top", 1}, {"full", true}}}});
        m_layoutLabels.push_back(label);
        m_layoutModels.push_back(model);
        m_layoutSequences.push_back(ids);
    };
    struct Variant {
        const char* label;
        bool interleave;
        std::int64_t qLora;
        std::int64_t layers;
    };
    for (const Variant& v : {Variant{"half-layout rope", false, 0, 2}, Variant{"query latent", true, 10, 2},
                             Variant{"26 blocks", true, 0, 26}}) {
        test::DeepSeekShape s;
        s.vocab = 512;
        s.interleave = v.interleave;
        s.qLora = v.qLora;
        s.layers = v.layers;
        const Model model = test::randomDeepSeekModel(s, 5);
        GgufExportOptions options;
        options.file = m_dir / ("random-" + std::to_string(m_layoutLabels.size()) + ".gguf");
        options.tokenizerFile = test::demoDir() / "tok512.bin";
        options.overwrite = true;
        exportGguf(model, options);
        // Ours: the model in memory, not the reloaded export.
        addLayout(v.label, model, options.file);
    }
    for (const char* name : {"deepseek2_dense", "deepseek2_lite", "deepseek2_qlora", "deepseek2_legacy"}) {
        const fs::path file = test::sourceDir() / "data" / "gguf" / (std::string(name) + ".gguf");
        addLayout(name, loadModel(file), file);
    }
    m_result = test::runLlamaCpp(m_job, m_dir);
}

void TestGgufDeepseek2LlamaCpp::convertedRealModelsAgree()
{
    if (m_result.skipped)
        QSKIP(m_result.skipped->c_str());
    QStringList quantisedFailures; // after every model's numbers are printed
    for (const PreparedReal& p : m_real) {
        const json& original = run(p.firstRun);
        const json& f32 = run(p.firstRun + 1);
        QCOMPARE(f32["generated"].size(), p.prompts.size());
        for (std::size_t i = 0; i < p.prompts.size(); ++i)
            QCOMPARE(f32["generated"][i].get<std::vector<int>>(), p.greedy[i]);
        const Transformer transformer(p.exported);
        const Transformer transformerQ4(p.exportedQ4);
        const json& q4run = run(p.firstRun + 3);
        double worst = 0.0;
        double worstQ4 = 0.0;
        int sameQ4 = 0;
        int decisiveQ4 = 0;
        int sameQ4Decisive = 0;
        int positions = 0;
        int decisive = 0;
        int agree[2] = {0, 0};
        int agreeDecisive[2] = {0, 0};
        for (std::size_t i = 0; i < p.prompts.size(); ++i) {
            std::vector<int> s = p.prompts[i];
            s.insert(s.end(), p.greedy[i].begin(), p.greedy[i].end());
            const json& theirs = f32["scores"][i];
            QCOMPARE(theirs.size(), s.size());
            worst = std::max(worst, test::maxProbabilityDifference(test::ourProbabilities(transformer, s), theirs));
            // The Q4_0 file in our reader (dequantised) and in llama.cpp (which also rounds activations to 8 bits).
            const MatrixRM oursQ4 = test::ourProbabilities(transformerQ4, s);
            worstQ4 = std::max(worstQ4, test::maxProbabilityDifference(oursQ4, q4run["scores"][i]));
            for (std::size_t pos = 0; pos < s.size(); ++pos) {
                const json& at = q4run["scores"][i][pos];
                const bool same = test::argmax(oursQ4.row(static_cast<Eigen::Index>(pos)).data(), oursQ4.cols()) == at["argmax"].get<int>();
                const bool clear = at["probs"][0].get<double>() - at["probs"][1].get<double>() >= kDeepseekDecisiveMargin;
                sameQ4 += same;
                decisiveQ4 += clear;
                sameQ4Decisive += same && clear;
            }
            for (std::size_t pos = 0; pos < theirs.size(); ++pos) {
                ++positions;
                const bool clear = theirs[pos]["probs"][0].get<double>() - theirs[pos]["probs"][1].get<double>() >= kDeepseekDecisiveMargin;
                decisive += clear;
                for (int q = 0; q < 2; ++q) {
                    const bool same = run(p.firstRun + 2 + static_cast<std::size_t>(q))["scores"][i][pos]["argmax"] == theirs[pos]["argmax"];
                    agree[q] += same;
                    agreeDecisive[q] += same && clear;
                }
            }
        }
        // llama.cpp caches kv_lora_rank + rope values per token and layer (as K; its V is a view of the latent).
        const double kvRatio = f32["kv_cache"]["mib"].get<double>() / original["kv_cache"]["mib"].get<double>();
        const double expectedRatio = static_cast<double>(p.kvValues) / static_cast<double>(p.originalKvValues);
        const double q8 = static_cast<double>(agree[0]) / positions, q4 = static_cast<double>(agree[1]) / positions;
        const double q8d = static_cast<double>(agreeDecisive[0]) / std::max(1, decisive);
        const double q4d = static_cast<double>(agreeDecisive[1]) / std::max(1, decisive);
        qInfo().noquote() << QString("%1 (deepseek2, %2 -> %3 KV values per token): greedy %4 x %5 tokens equal; max |p - "
                                     "p_llama.cpp| %6 over %7 positions; export vs conversion in memory %8; top-1 vs F32 "
                                     "in llama.cpp, all / %9 decisive: Q8_0 %10 / %11, Q4_0 %12 / %13; llama.cpp KV buffer "
                                     "%14 vs %15 MiB at %16 cells (%17x, expected %18x); Q4_0 file, ours vs llama.cpp: "
                                     "top-1 %19 (%20 on its %21 decisive positions), max |p - p_llama.cpp| %22")
                                 .arg(p.name.c_str()).arg(p.originalKvValues).arg(p.kvValues).arg(p.prompts.size())
                                 .arg(kDeepseekGreedyTokens).arg(worst, 0, 'g', 3).arg(positions).arg(p.inMemoryDifference, 0, 'g', 3)
                                 .arg(decisive).arg(q8, 0, 'f', 3).arg(q8d, 0, 'f', 3).arg(q4, 0, 'f', 3).arg(q4d, 0, 'f', 3)
                                 .arg(f32["kv_cache"]["mib"].get<double>()).arg(original["kv_cache"]["mib"].get<double>())
                                 .arg(f32["kv_cache"]["cells"].get<int>()).arg(kvRatio, 0, 'f', 3).arg(expectedRatio, 0, 'f', 3)
                                 .arg(static_cast<double>(sameQ4) / positions, 0, 'f', 3)
                                 .arg(static_cast<double>(sameQ4Decisive) / std::max(1, decisiveQ4), 0, 'f', 3).arg(decisiveQ4)
                                 .arg(worstQ4, 0, 'g', 3);
        QVERIFY2(worst <= kDeepseekProbabilityTolerance, qPrintable(QString("%1: %2").arg(p.name.c_str()).arg(worst)));
        QVERIFY2(p.inMemoryDifference < 1e-4, qPrintable(QString::number(p.inMemoryDifference)));
        QCOMPARE(f32["kv_cache"]["cells"].get<int>(), original["kv_cache"]["cells"].get<int>());
        // llama.cpp rounds the MiB it logs to 0.01.
        QVERIFY2(std::fabs(kvRatio - expectedRatio) < 0.02 + 0.01 / original["kv_cache"]["mib"].get<double>(),
                 qPrintable(QString("KV buffer ratio %1, expected %2").arg(kvRatio).arg(expectedRatio)));
        if (!(q8 >= 0.5 && q8d >= 0.95))
            quantisedFailures << QString("%1: Q8_0 top-1 agreement %2 / %3").arg(p.name.c_str()).arg(q8).arg(q8d);
        // A model converted at 75% KV saving loses more to 4-bit weights than its original (the originals keep
        // 0.85-0.96 of decisive top-1 choices in Q4_0: tst_gguf_llama_cpp; these 0.59-0.96, measured 2026-12), so
        // the Q4_0 bound here is lower; that the Q4_0 file itself is right is checked by reading it in our engine,
        // whose decisive choices equal llama.cpp's on it (llama.cpp also rounds activations to 8 bits there). The
        // figure is a property of the converted model, not of the file: xs260K went from 0.65 to 0.59 (one decisive
        // position is 0.03) when a float-rounding change in attention made the sampled calibration pick other tokens,
        // with the same F32 quality (KL 1.204 against 1.205 on held-out sequences).
        if (!(q4d >= 0.5))
            quantisedFailures << QString("%1: Q4_0 top-1 agreement %2 / %3").arg(p.name.c_str()).arg(q4).arg(q4d);
        const double q4Reading = static_cast<double>(sameQ4Decisive) / std::max(1, decisiveQ4);
        if (!(q4Reading >= 0.9))
            quantisedFailures << QString("%1: the Q4_0 file's decisive top-1, ours vs llama.cpp: %2").arg(p.name.c_str()).arg(q4Reading);
    }
    QVERIFY2(quantisedFailures.isEmpty(), qPrintable(quantisedFailures.join("; ")));
}

void TestGgufDeepseek2LlamaCpp::deepSeekLayoutsAgree()
{
    if (m_result.skipped)
        QSKIP(m_result.skipped->c_str());
    for (std::size_t i = 0; i < m_layoutModels.size(); ++i) {
        const MatrixRM ours = test::ourProbabilities(Transformer(m_layoutModels[i]), m_layoutSequences[i]);
        const double worst = test::maxProbabilityDifference(ours, run(m_firstLayoutRun + i)["scores"][0]);
        qInfo().noquote() << QString("%1: max |p - p_llama.cpp| %2").arg(m_layoutLabels[i].c_str()).arg(worst, 0, 'g', 3);
        QVERIFY2(worst <= kDeepseekProbabilityTolerance, m_layoutLabels[i].c_str());
    }
}

QTEST_GUILESS_MAIN(TestGgufDeepseek2LlamaCpp)
#include "tst_gguf_deepseek2_llama_cpp.moc"
