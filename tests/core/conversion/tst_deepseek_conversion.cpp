// The deepseek-v3 target: the shared RoPE head is exact where the keys allow it, the written folder reloads bit for
// bit and gives the in-memory model's logits, an independent numpy reference of transformers' DeepseekV3 attention
// agrees with our engine on the export, the latent-norm fit never loses to rescaling, and impossible widths are
// refused with a clear message before any work.
#include "backend/compute_backend.h"
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "conversion/deepseek_converter.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "numerics/random_fill.h"
#include "util/error.h"

#include <QtTest>

#include <cmath>
#include <complex>
#include <cstring>

using namespace mla;

namespace {

CalibrationSet calibrationOf(const Model& m, int count, int length, std::uint64_t seed)
{
    CalibrationSet c;
    c.sequences = test::sampleSequences(Transformer(m), count, length, seed);
    c.description = "test samples";
    return c;
}

// Fixed pseudo-random ids (a random model's samples stop at the first BOS it draws).
TokenSequences fixedSequences(std::int64_t vocab, int count, int length)
{
    TokenSequences out;
    for (int s = 0; s < count; ++s) {
        std::vector<int> ids{1};
        for (int i = 1; i < length; ++i)
            ids.push_back(static_cast<int>((i * 37 + s * 101 + (i * i) % 13) % vocab));
        out.push_back(ids);
    }
    return out;
}

// A GQA llama whose second KV head's key pairs are a complex multiple of the first head's at every frequency: the
// keys have exactly one component per frequency, so one shared RoPE head of head-size width carries them exactly.
Model rankOneKeyModel()
{
    ModelConfig c;
    c.architecture = "llama";
    c.hidden = 32;
    c.ffn = 48;
    c.layers = 2;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 8;
    c.vocab = 64;
    c.maxPositions = 64;
    c.rmsEps = 1e-5;
    c.tieEmbeddings = true;
    c.bosId = 1;
    Model m = test::randomModel(c, 21);
    for (std::size_t l = 0; l < m.layers.size(); ++l) {
        MatrixRM k = m.layers[l].k.toMatrix();
        for (std::int64_t j = 0; j < 4; ++j) {
            const std::complex<float> alpha = std::polar(0.5f + 0.3f * static_cast<float>(j), 0.7f * static_cast<float>(j + l) + 0.3f);
            const auto a = k.row(j).eval(), b = k.row(j + 4).eval();
            k.row(8 + j) = alpha.real() * a - alpha.imag() * b;
            k.row(8 + j + 4) = alpha.real() * b + alpha.imag() * a;
        }
        m.layers[l].k = Tensor::fromMatrix(k);
    }
    return m;
}

bool sameBytes(const Tensor& a, const Tensor& b)
{
    return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

} // namespace

class TestDeepSeekConversion : public QObject {
    Q_OBJECT
private slots:
    void sharedRopeIsExactWhereKeysAllowIt();
    void exportReloadsBitForBitAndMatchesReference();
    void latentNormFitNeverLosesToRescaling();
    void widthsAreCheckedBeforeWork();
    void biasesAreFolded();
};

void TestDeepSeekConversion::sharedRopeIsExactWhereKeysAllowIt()
{
    const Model original = rankOneKeyModel();
    ConversionSettings s;
    s.target = ConversionTarget::DeepSeekV3;
    s.ropePairs = 4;   // one shared head of 8 dims: one slot per frequency
    s.latentDim = 16;  // the values' rank; nothing else is left in the position-free keys
    DeepSeekConversionOptions o;
    o.latentNorm = false; // the norm is the one part that is approximated by construction
    CalibrationSet calibration;
    calibration.sequences = fixedSequences(original.config.vocab, 3, 24);
    const DeepSeekConversion d = convertToDeepSeek(cpuBackend(), original, s, calibration, {}, o);
    QCOMPARE(d.model.config.rope.theta, 10000.0);
    for (const auto& layer : d.layers) {
        for (std::size_t i = 0; i < layer.ropeSlots.size(); ++i)
            QCOMPARE(layer.ropeSlots[i].pair, static_cast<int>(i));
        QVERIFY(layer.ropeCost < 1e-9);
    }
    const Transformer a(original), b(d.model);
    for (const auto& seq : fixedSequences(original.config.vocab, 2, 40)) {
        const MatrixRM la = test::sequenceLogits(a, seq), lb = test::sequenceLogits(b, seq);
        const double rel = test::relativeNormDifference(lb.data(), la.data(), static_cast<std::size_t>(la.size()));
        QVERIFY2(rel < 1e-4, std::to_string(rel).c_str());
    }
    // With the latent norm the same conversion is no longer exact: the norm is the approximated part.
    const DeepSeekConversion normed = convertToDeepSeek(cpuBackend(), original, s, calibration);
    const auto seq = fixedSequences(original.config.vocab, 1, 40)[0];
    const MatrixRM la = test::sequenceLogits(a, seq), ln = test::sequenceLogits(Transformer(normed.model), seq);
    QVERIFY(test::relativeNormDifference(ln.data(), la.data(), static_cast<std::size_t>(la.size())) > 1e-3);
}

void TestDeepSeekConversion::exportReloadsBitForBitAndMatchesReference()
{
    const Model original = test::loadRealModel("stories260K");
    ConversionSettings s;
    s.target = ConversionTarget::DeepSeekV3;
    const DeepSeekConversion d = convertToDeepSeek(cpuBackend(), original, s, calibrationOf(original, 2, 32, 3));
    QCOMPARE(d.model.config.architecture, std::string("deepseek_v3"));
    QCOMPARE(d.model.config.kvElementsPerToken(), original.config.kvElementsPerToken() / 4);

    const auto dir = test::scratchDir("deepseek-export");
    ExportOptions e;
    e.folder = dir / "out";
    e.extraFiles = companionFiles(original);
    exportModel(d.model, e);
    const Model reloaded = loadModel(e.folder);
    QVERIFY(reloaded.config.deepseek == d.model.config.deepseek);
    QCOMPARE(reloaded.config.rope.theta, d.model.config.rope.theta);
    for (const PlannedTensor& p : tensorPlan(d.model.config))
        QVERIFY2(sameBytes(modelTensor(reloaded, p.role, p.layer), modelTensor(d.model, p.role, p.layer)),
                 std::string(tensorRoleLabel(p.role)).c_str());

    const Transformer inMemory(d.model), fromDisk(reloaded), expanded(reloaded, MlaForm::Expanded);
    const auto seqs = test::sampleSequences(Transformer(original), 2, 48, 5);
    for (const auto& seq : seqs) {
        const MatrixRM a = test::sequenceLogits(inMemory, seq), b = test::sequenceLogits(fromDisk, seq);
        QCOMPARE(test::maxAbsoluteDifference(a.data(), b.data(), static_cast<std::size_t>(a.size())), 0.0);
        const MatrixRM x = test::sequenceLogits(expanded, seq);
        QVERIFY(test::relativeNormDifference(x.data(), b.data(), static_cast<std::size_t>(b.size())) < 1e-5);
    }

    const auto fixture = dir / "reference";
    test::writeReferenceFixture(d.model, fixture, seqs[0]);
    std::string output;
    bool skipped = false;
    const bool ok = test::runDeepSeekReference({fixture}, output, skipped);
    if (skipped)
        QSKIP(output.c_str());
    QVERIFY2(ok, output.c_str());
}

void TestDeepSeekConversion::latentNormFitNeverLosesToRescaling()
{
    const Model original = test::loadRealModel("aidreams260K");
    ConversionSettings s;
    s.target = ConversionTarget::DeepSeekV3;
    s.activationAware = true;
    const DeepSeekConversion d = convertToDeepSeek(cpuBackend(), original, s, calibrationOf(original, 2, 32, 4));
    for (const auto& r : d.layers) {
        QVERIFY(r.latentResidualNormFitted <= r.latentResidualNormScaled + 1e-9);
        QVERIFY(r.latentResidualNormFitted >= 0.0 && r.latentResidualNormFitted < 1.0);
        QVERIFY(std::isfinite(r.outputErrorFinal));
    }
}

void TestDeepSeekConversion::widthsAreCheckedBeforeWork()
{
    const ModelConfig stories = test::loadRealModel("stories260K").config;
    auto message = [](const ModelConfig& c, const ConversionSettings& s) {
        try {
            deepSeekWidths(c, s);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    ConversionSettings flash;
    flash.target = ConversionTarget::DeepSeekV3;
    flash.flashMla = true;
    QVERIFY(message(stories, flash).find("too small for FlashMLA") != std::string::npos);
    const ModelConfig llama7b = syntheticShape("llama2-7b").config;
    const DeepSeekWidths w = deepSeekWidths(llama7b, flash);
    QCOMPARE(w.kvLoraRank, std::int64_t(512));
    QCOMPARE(w.ropeDim, std::int64_t(64));

    ConversionSettings s;
    s.target = ConversionTarget::DeepSeekV3;
    s.method = LatentMethod::Split;
    QVERIFY(message(stories, s).find("joint") != std::string::npos);
    s.method = LatentMethod::Joint;
    s.ropePairs = 0;
    QVERIFY(message(stories, s).find("at least one pair") != std::string::npos);
    s.ropePairs = 4;
    s.latentDim = 1000;
    QVERIFY(message(stories, s).find("wider than") != std::string::npos);
    s.latentDim = -1;
    s.targetSaving = 0.99;
    QVERIFY(message(stories, s).find("no room") != std::string::npos);

    Model mla = test::loadRealModel("stories260K");
    mla.config = test::randomDeepSeekModel({}, 1).config;
    bool refused = false;
    try {
        convertToDeepSeek(cpuBackend(), mla, ConversionSettings(), CalibrationSet());
    } catch (const Error& e) {
        refused = std::string(e.what()).find("already uses Multi-head Latent Attention") != std::string::npos;
    }
    QVERIFY(refused);
}

void TestDeepSeekConversion::biasesAreFolded()
{
    // Qwen2-shaped: q, k and v biases. A key bias on pairs the shared head does not keep is position-free after the
    // conversion and drops out of the softmax: the converted model is the same with or without it.
    Model original = rankOneKeyModel();
    original.config.architecture = "qwen2";
    original.config.qkvBias = true;
    for (auto& w : original.layers) {
        w.qBias = VectorF::Zero(original.config.qDim());
        w.vBias = VectorF::Zero(original.config.kvDim());
        w.kBias = VectorF::Zero(original.config.kvDim());
    }
    ConversionSettings s;
    s.target = ConversionTarget::DeepSeekV3;
    s.ropePairs = 2; // keeps pairs 0 and 1 (the fastest; every pair has one component)
    s.latentDim = 16;
    CalibrationSet calibration;
    calibration.sequences = fixedSequences(original.config.vocab, 3, 24);
    const DeepSeekConversion plain = convertToDeepSeek(cpuBackend(), original, s, calibration);
    Model biased = original;
    for (auto& w : biased.layers) {
        for (std::int64_t g = 0; g < 2; ++g)
            for (std::int64_t dim : {2, 3, 6, 7})
                w.kBias(g * 8 + dim) = 0.02f * static_cast<float>(dim - 4 * g);
    }
    const DeepSeekConversion withKeyBias = convertToDeepSeek(cpuBackend(), biased, s, calibration);
    for (const auto& layer : withKeyBias.layers) {
        QCOMPARE(layer.ropeSlots[0].pair, 0);
        QCOMPARE(layer.ropeSlots[1].pair, 1);
        QCOMPARE(layer.keyBiasResidual, 0.0);
    }
    // Layer 0 sees the same inputs in both models, so its conversion must come out the same: the bias left no trace.
    // (Later layers differ: in the ORIGINAL the bias is rotated with the pairs 2, 3 and changes the hidden states that
    // the sequential conversion fits them on.)
    QCOMPARE(withKeyBias.model.config.rope.theta, plain.model.config.rope.theta);
    for (auto [got, want] : {std::pair{&withKeyBias.model.layers[0].q, &plain.model.layers[0].q},
                             std::pair{&withKeyBias.model.layers[0].kvA, &plain.model.layers[0].kvA},
                             std::pair{&withKeyBias.model.layers[0].kvB, &plain.model.layers[0].kvB}}) {
        const MatrixRM g = got->toMatrix(), w = want->toMatrix();
        const double rel = test::relativeNormDifference(g.data(), w.data(), static_cast<std::size_t>(w.size()));
        QVERIFY2(rel < 1e-5, std::to_string(rel).c_str());
    }
    const auto seq = fixedSequences(original.config.vocab, 1, 40)[0];
    const MatrixRM oa = test::sequenceLogits(Transformer(original), seq), ob = test::sequenceLogits(Transformer(biased), seq);
    QVERIFY(test::relativeNormDifference(ob.data(), oa.data(), static_cast<std::size_t>(oa.size())) > 1e-4); // it mattered there

    // Every bias at once: folded by least squares, with what is left reported.
    Model full = biased;
    for (std::size_t l = 0; l < full.layers.size(); ++l) {
        MatrixRM q(full.config.qDim(), 1), v(full.config.kvDim(), 1);
        fillGaussian(q, 5, l);
        fillGaussian(v, 6, l);
        full.layers[l].qBias = q.col(0) * 0.1f;
        full.layers[l].vBias = v.col(0) * 0.1f;
    }
    const DeepSeekConversion folded = convertToDeepSeek(cpuBackend(), full, s, calibration);
    for (const auto& r : folded.layers) {
        QVERIFY(r.queryBiasResidual > 0.0 && r.queryBiasResidual < 1.0);
        QVERIFY(r.valueBiasShare > 0.0 && r.valueBiasShare < 1.0);
        QVERIFY(std::isfinite(r.outputErrorFinal));
    }
}

QTEST_GUILESS_MAIN(TestDeepSeekConversion)
#include "tst_deepseek_conversion.moc"
