// Batched decoding (Transformer::forwardBatch, BatchDecoderSession, generateBatch) against decoding each sequence
// alone: a batched step's logits equal the single-sequence step's bit for bit (sequences at different positions,
// GQA, MHA, Qwen2 q/k/v biases, Qwen3 q/k norms, a sliding window, bf16 and f16 weights, MLA conversions in the absorbed and
// expanded forms, a DeepSeek-V3 model); generateBatch gives exactly the ids and stop reasons of generate with the
// same seeds (real and random GQA models, top-p on and off, in batches of any size, on the CPU's batched session and
// on the one-session-per-sequence default of other backends); the sampled calibration reproduces the sequences of
// one-at-a-time sampling with the seeds seed * 7919 + i; an observed step shows each row's activations as a
// single-token forward shows them; cancellation stops it.
#include "analysis/calibration.h"
#include "backend/compute_backend.h"
#include "common/deepseek_fixtures.h"
#include "common/model_fixtures.h"
#include "common/recording_backend.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "engine/generator.h"
#include "tensor/kernels.h"
#include "tokenizer/tokenizer.h"

#include <QtTest>

#include <array>
#include <atomic>
#include <set>
#include <random>

using namespace mla;

namespace {

Model withWeights(Model m, DType dtype)
{
    const auto toBf16 = [dtype](Tensor& t) {
        if (t.empty() || t.shape().size() != 2)
            return;
        const MatrixRM values = t.toMatrix();
        t = Tensor::fromFloats(dtype, t.shape(), values.data());
    };
    for (LayerWeights& w : m.layers) {
        for (Tensor* t : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down})
            toBf16(*t);
    }
    toBf16(m.output);
    return m;
}

Model converted(const Model& original, LatentMethod method)
{
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 2;
    s.method = method;
    s.latentDim = 24;
    return convertModel(cpuBackend(), original, planConversion(original.config, s, selectPairs(original.config, s, nullptr)));
}

struct Case {
    Model model;
    MlaForm form = MlaForm::Absorbed;
};

Case makeCase(const QString& name)
{
    const std::string n = name.toStdString();
    if (n == "stories260K")
        return {test::loadRealModel("stories260K")};
    if (n == "mla joint absorbed" || n == "mla joint expanded")
        return {converted(test::loadRealModel("stories260K"), LatentMethod::Joint),
                n == "mla joint absorbed" ? MlaForm::Absorbed : MlaForm::Expanded};
    if (n == "mla split absorbed")
        return {converted(test::loadRealModel("xs260K"), LatentMethod::Split)};
    if (n == "deepseek-v3 absorbed" || n == "deepseek-v3 expanded") {
        test::DeepSeekShape shape;
        shape.qLora = 10;
        return {test::randomDeepSeekModel(shape, 5), n == "deepseek-v3 absorbed" ? MlaForm::Absorbed : MlaForm::Expanded};
    }
    if (n == "llama bf16" || n == "llama f16")
        return {withWeights(test::randomModel(test::tinyConfig("llama"), 3), n == "llama bf16" ? DType::BF16 : DType::F16)};
    return {test::randomModel(test::tinyConfig(n), 3)};
}

std::vector<int> randomIds(std::size_t count, std::int64_t vocab, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::vector<int> ids;
    for (std::size_t i = 0; i < count; ++i)
        ids.push_back(static_cast<int>(3 + rng() % static_cast<std::uint32_t>(vocab - 3)));
    return ids;
}

double maxAbsDifference(const MatrixRM& a, const MatrixRM& b)
{
    return static_cast<double>((a - b).cwiseAbs().maxCoeff());
}

} // namespace

class TestBatchedDecode : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void matvecRowsEqualsMatvec();
    void batchedStepEqualsSingleStep_data();
    void batchedStepEqualsSingleStep();
    void batchedStepRefusesBadInput();
    void observedStepShowsEachRowsActivations_data();
    void observedStepShowsEachRowsActivations();
    void generateBatchEqualsGenerate_data();
    void generateBatchEqualsGenerate();
    void calibrationReproducesOneAtATimeSampling();
    void cancellationStopsSampling();
};

// The kernel under the batched step: every row of matvecRows equals matvec of that row bit for bit, for each weight
// dtype, row lengths with and without a tail that is not a multiple of 8 or 32, and token counts around the kernel's
// groups of three and the pairs after them (none at all included).
void TestBatchedDecode::matvecRowsEqualsMatvec()
{
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (const DType dtype : {DType::F32, DType::F16, DType::BF16}) {
        for (const std::int64_t cols : {36, 44, 64, 200, 576}) {
            for (const std::int64_t rows : {40, 130}) {
                MatrixRM w(rows, cols);
                for (Eigen::Index i = 0; i < w.size(); ++i)
                    w.data()[i] = normal(rng) * 0.2f;
                const Tensor t = Tensor::fromFloats(dtype, {rows, cols}, w.data());
                for (const std::int64_t n : {0, 1, 2, 3, 4, 5, 7, 10, 16}) {
                    MatrixRM x(n, cols);
                    for (Eigen::Index i = 0; i < x.size(); ++i)
                        x.data()[i] = normal(rng);
                    MatrixRM y;
                    matvecRows(t, x, y);
                    QCOMPARE(y.rows(), static_cast<Eigen::Index>(n));
                    QCOMPARE(y.cols(), static_cast<Eigen::Index>(rows));
                    std::vector<float> expected(static_cast<std::size_t>(rows));
                    for (std::int64_t i = 0; i < n; ++i) {
                        matvec(t, x.row(i).data(), expected.data());
                        for (std::int64_t r = 0; r < rows; ++r)
                            QVERIFY2(y(i, r) == expected[static_cast<std::size_t>(r)],
                                     qPrintable(QString("dtype %1, %2 x %3, %4 tokens: row %5 output %6 differs")
                                                    .arg(static_cast<int>(dtype)).arg(rows).arg(cols).arg(n).arg(i).arg(r)));
                    }
                }
            }
        }
    }
}

void TestBatchedDecode::batchedStepEqualsSingleStep_data()
{
    QTest::addColumn<QString>("name");
    for (const char* n : {"stories260K", "llama", "qwen2", "qwen3", "mistral", "mha", "llama bf16", "llama f16", "mla joint absorbed",
                          "mla joint expanded", "mla split absorbed", "deepseek-v3 absorbed", "deepseek-v3 expanded"})
        QTest::newRow(n) << QString(n);
}

// Four sequences with prompts of different lengths (so every row of a step is at another position), then decode
// steps over all of them and over a subset, against four separate caches decoded one token at a time.
void TestBatchedDecode::batchedStepEqualsSingleStep()
{
    QFETCH(QString, name);
    const Case k = makeCase(name);
    const Transformer t(k.model, k.form);
    const std::int64_t vocab = t.config().vocab;
    constexpr int kSequences = 4, kSteps = 6;
    const std::int64_t capacity = 32;
    std::vector<KvCache> batched, single;
    for (int i = 0; i < kSequences; ++i) {
        batched.push_back(t.newCache(capacity));
        single.push_back(t.newCache(capacity));
        const std::vector<int> prompt = randomIds(static_cast<std::size_t>(1 + 3 * i), vocab, 100u + static_cast<std::uint32_t>(i));
        t.forward(prompt, batched.back(), Logits::None);
        t.forward(prompt, single.back(), Logits::None);
    }
    double largest = 0.0;
    for (int step = 0; step < kSteps; ++step) {
        // Every other step leaves sequence 1 out: a batch is any subset, in any order.
        std::vector<int> rows = step % 2 == 0 ? std::vector<int>{0, 1, 2, 3} : std::vector<int>{3, 0, 2};
        const std::vector<int> tokens = randomIds(rows.size(), vocab, 7u + static_cast<std::uint32_t>(step));
        std::vector<KvCache*> caches;
        for (int r : rows)
            caches.push_back(&batched[static_cast<std::size_t>(r)]);
        const MatrixRM logits = t.forwardBatch(tokens, caches);
        QCOMPARE(logits.rows(), static_cast<Eigen::Index>(rows.size()));
        QCOMPARE(logits.cols(), static_cast<Eigen::Index>(vocab));
        for (std::size_t i = 0; i < rows.size(); ++i) {
            KvCache& cache = single[static_cast<std::size_t>(rows[i])];
            const MatrixRM expected = t.forward(std::span<const int>(&tokens[i], 1), cache, Logits::Last);
            QCOMPARE(batched[static_cast<std::size_t>(rows[i])].length(), cache.length());
            largest = std::max(largest, static_cast<double>(expected.cwiseAbs().maxCoeff()));
            const double diff = maxAbsDifference(logits.row(static_cast<Eigen::Index>(i)), expected);
            // Bit for bit: the same kernels in the same summation order (matvecRows), per-sequence attention.
            QVERIFY2(diff == 0.0, qPrintable(QString("step %1, sequence %2: batched logits differ by %3").arg(step).arg(rows[i]).arg(diff)));
        }
    }
    QVERIFY(largest > 0.1); // not a degenerate model
}

void TestBatchedDecode::batchedStepRefusesBadInput()
{
    const Transformer t(test::randomModel(test::tinyConfig("llama"), 3));
    KvCache a = t.newCache(2), b = t.newCache(2);
    const std::vector<int> two{3, 4};
    std::vector<KvCache*> same{&a, &a};
    QVERIFY_THROWS_EXCEPTION(Error, t.forwardBatch(two, same));
    std::vector<KvCache*> one{&a};
    QVERIFY_THROWS_EXCEPTION(Error, t.forwardBatch(two, one));
    std::vector<KvCache*> both{&a, &b};
    t.forwardBatch(two, both);
    t.forwardBatch(two, both);
    QCOMPARE(a.length(), 2);
    QVERIFY_THROWS_EXCEPTION(Error, t.forwardBatch(two, both)); // full
    const std::vector<int> outside{3, 99};
    KvCache c = t.newCache(2), d = t.newCache(2);
    std::vector<KvCache*> fresh{&c, &d};
    QVERIFY_THROWS_EXCEPTION(Error, t.forwardBatch(outside, fresh));
    QCOMPARE(c.length(), 0);
}

void TestBatchedDecode::observedStepShowsEachRowsActivations_data()
{
    QTest::addColumn<QString>("name");
    for (const char* n : {"stories260K", "qwen2", "qwen3", "mha", "llama bf16", "mla joint expanded", "mla joint absorbed"})
        QTest::newRow(n) << QString(n);
}

// An observed batched step shows, per layer, every row's attention input, pre-RoPE queries and keys and values: row i
// bit-identical to what the single-token forward of sequence i shows its observer. Without logits it still advances
// every cache.
void TestBatchedDecode::observedStepShowsEachRowsActivations()
{
    QFETCH(QString, name);
    const Case k = makeCase(name);
    const Transformer t(k.model, k.form);
    const ModelConfig& c = t.config();
    struct Recorder : ForwardObserver {
        std::vector<std::array<MatrixRM, 4>> layers;
        void onLayer(const LayerActivations& a) override
        {
            layers.resize(std::max(layers.size(), static_cast<std::size_t>(a.layer + 1)));
            const auto copy = [](const MatrixRM* m) { return m ? *m : MatrixRM(); };
            layers[static_cast<std::size_t>(a.layer)] = {*a.attnInput, copy(a.queries), copy(a.keys), copy(a.values)};
        }
    };
    constexpr int kSequences = 3;
    std::vector<KvCache> batched, single;
    for (int i = 0; i < kSequences; ++i) {
        batched.push_back(t.newCache(16));
        single.push_back(t.newCache(16));
        const std::vector<int> prompt = randomIds(static_cast<std::size_t>(1 + 2 * i), c.vocab, 40u + static_cast<std::uint32_t>(i));
        t.forward(prompt, batched.back(), Logits::None);
        t.forward(prompt, single.back(), Logits::None);
    }
    for (const Logits logits : {Logits::All, Logits::None}) {
        const std::vector<int> tokens = randomIds(kSequences, c.vocab, logits == Logits::All ? 5u : 6u);
        std::vector<KvCache*> caches;
        for (auto& cache : batched)
            caches.push_back(&cache);
        Recorder step;
        const MatrixRM out = t.forwardBatch(tokens, caches, &step, logits);
        QCOMPARE(out.rows(), logits == Logits::All ? Eigen::Index(kSequences) : Eigen::Index(0));
        QCOMPARE(static_cast<std::int64_t>(step.layers.size()), c.layers);
        for (int i = 0; i < kSequences; ++i) {
            Recorder alone;
            t.forward(std::span<const int>(&tokens[static_cast<std::size_t>(i)], 1), single[static_cast<std::size_t>(i)], Logits::None, &alone);
            QCOMPARE(batched[static_cast<std::size_t>(i)].length(), single[static_cast<std::size_t>(i)].length());
            for (std::int64_t l = 0; l < c.layers; ++l) {
                for (std::size_t part = 0; part < 4; ++part) {
                    const MatrixRM& rows = step.layers[static_cast<std::size_t>(l)][part];
                    const MatrixRM& expected = alone.layers[static_cast<std::size_t>(l)][part];
                    if (expected.size() == 0) { // the absorbed form shows no expanded queries or values, so none of them
                        QVERIFY(part > 0 && rows.size() == 0);
                        continue;
                    }
                    QCOMPARE(rows.rows(), Eigen::Index(kSequences));
                    QVERIFY2(maxAbsDifference(rows.row(i), expected) == 0.0,
                             qPrintable(QString("layer %1, activation %2, sequence %3").arg(l).arg(part).arg(i)));
                }
            }
        }
    }
}

void TestBatchedDecode::generateBatchEqualsGenerate_data()
{
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("prompt");
    QTest::addColumn<float>("topP");
    QTest::addColumn<int>("maxBatch");
    QTest::addColumn<bool>("defaultSessions");
    QTest::newRow("stories260K, BOS, top-p off") << "stories260K" << "" << 1.0f << 0 << false;
    QTest::newRow("stories260K, BOS, top-p 0.9, batches of 2") << "stories260K" << "" << 0.9f << 2 << false;
    QTest::newRow("stories260K, a prompt") << "stories260K" << "Once upon" << 1.0f << 3 << false;
    QTest::newRow("stories260K, one session per sequence") << "stories260K" << "" << 1.0f << 0 << true;
    QTest::newRow("random GQA qwen2 (stops at EOS)") << "qwen2" << "" << 1.0f << 0 << false;
}

void TestBatchedDecode::generateBatchEqualsGenerate()
{
    QFETCH(QString, model);
    QFETCH(QString, prompt);
    QFETCH(float, topP);
    QFETCH(int, maxBatch);
    QFETCH(bool, defaultSessions);
    const bool real = model == "stories260K";
    ModelConfig config = test::tinyConfig(model.toStdString());
    config.tieEmbeddings = false; // tied, the random model's likeliest next token is the one it was given (BOS)
    const Transformer t(real ? test::loadRealModel("stories260K") : test::randomModel(config, 9));
    std::unique_ptr<Tokenizer> tokenizer;
    if (real)
        tokenizer = loadTokenizer(test::demoDir() / "tok512.bin");
    const std::vector<int> start = promptIds(t.config(), tokenizer.get(), prompt.toStdString());
    GenerationOptions g;
    g.steps = real ? 96 : 60;
    g.temperature = 1.0f;
    g.topP = topP;
    const std::vector<std::uint64_t> seeds{7919, 7920, 7921, 7922, 7923, 12345, 1};
    test::RecordingBackend recording;
    recording.sessionPerSequence = true;
    const ComputeBackend& backend = defaultSessions ? static_cast<const ComputeBackend&>(recording) : cpuBackend();
    const std::vector<GenerationResult> batch = generateBatch(backend, t, tokenizer.get(), start, g, seeds, {}, maxBatch);
    QCOMPARE(batch.size(), seeds.size());
    if (defaultSessions)
        QCOMPARE(recording.calls(), static_cast<std::int64_t>(seeds.size())); // one decoder session per sequence
    std::set<std::string> reasons;
    std::set<std::vector<int>> distinct;
    std::set<std::size_t> lengths;
    for (std::size_t i = 0; i < seeds.size(); ++i) {
        GenerationOptions one = g;
        one.seed = seeds[i];
        const GenerationResult alone = generate(cpuBackend(), t, tokenizer.get(), start, one);
        QCOMPARE(batch[i].ids, alone.ids);
        QCOMPARE(batch[i].stopReason, alone.stopReason);
        QCOMPARE(batch[i].text, alone.text);
        QCOMPARE(batch[i].kvBytesPerToken, alone.kvBytesPerToken);
        QCOMPARE(batch[i].cacheCapacity, alone.cacheCapacity);
        reasons.insert(alone.stopReason);
        distinct.insert(alone.ids);
        lengths.insert(alone.ids.size());
    }
    QCOMPARE(distinct.size(), seeds.size()); // the seeds really give different sequences
    if (!real) { // the random model's BOS and EOS (2 ids of 40) end sequences early while others in the batch run on
        QVERIFY(reasons.count("eos") + reasons.count("bos") > 0);
        QVERIFY(lengths.size() > 2);
    }
}

// The default calibration (16 x 256 on a real model, shortened here) is the sequences one-at-a-time sampling drew
// before batching: sequence i from BOS with the seed seed * 7919 + i, temperature 1, no top-p.
void TestBatchedDecode::calibrationReproducesOneAtATimeSampling()
{
    const Transformer t(test::loadRealModel("stories260K"));
    CalibrationOptions o;
    o.samples = 6;
    o.sequenceLength = 80;
    o.seed = 3;
    std::vector<double> fractions;
    const JobControl job(nullptr, [&](double f, const std::string&) { fractions.push_back(f); });
    const CalibrationSet set = prepareCalibration(cpuBackend(), t, nullptr, o, job);
    QCOMPARE(set.sequences.size(), std::size_t(6));
    for (std::int64_t i = 0; i < o.samples; ++i) {
        GenerationOptions g;
        g.steps = o.sequenceLength - 1;
        g.temperature = 1.0f;
        g.topP = 1.0f;
        g.seed = o.seed * 7919 + static_cast<std::uint64_t>(i);
        const GenerationResult r = generate(cpuBackend(), t, nullptr, {*t.config().bosId}, g);
        std::vector<int> expected{*t.config().bosId};
        expected.insert(expected.end(), r.ids.begin(), r.ids.end());
        QCOMPARE(set.sequences[static_cast<std::size_t>(i)], expected);
    }
    QVERIFY(fractions.size() > 10);
    QVERIFY(std::is_sorted(fractions.begin(), fractions.end()));
    QCOMPARE(fractions.back(), 1.0);
    // A different seed, different sequences.
    o.seed = 4;
    QVERIFY(prepareCalibration(cpuBackend(), t, nullptr, o).sequences != set.sequences);
}

void TestBatchedDecode::cancellationStopsSampling()
{
    const Transformer t(test::loadRealModel("stories260K"));
    CalibrationOptions o;
    o.samples = 4;
    o.sequenceLength = 200;
    std::atomic<bool> cancel{false};
    int calls = 0;
    const JobControl job(&cancel, [&](double, const std::string&) {
        if (++calls == 5)
            cancel = true;
    });
    QVERIFY_THROWS_EXCEPTION(Cancelled, prepareCalibration(cpuBackend(), t, nullptr, o, job));
    QCOMPARE(calls, 5); // stopped at the next step, not at the end
}

QTEST_GUILESS_MAIN(TestBatchedDecode)
#include "tst_batched_decode.moc"
