// Sampling with any temperature and top-p, and logits holding NaN or infinities: a token or an Error naming the
// cause, never a crash; and on ordinary logits the very ids llama2.c's run.c draws (its algorithm, copied here).
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "backend/compute_backend.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "model/model_loader.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using namespace mla;
namespace fs = std::filesystem;

namespace {

// run.c's sample(), as it is (xorshift, softmax, top-p with the (1 - p) / (n - 1) cut), for ordinary inputs.
struct RunC {
    std::uint64_t state;
    std::uint32_t u32()
    {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return static_cast<std::uint32_t>((state * 0x2545F4914F6CDD1Dull) >> 32);
    }
    float f32() { return static_cast<float>(u32() >> 8) / 16777216.0f; }
    int sample(std::vector<float> x, float temperature, float topp)
    {
        const int n = static_cast<int>(x.size());
        for (auto& v : x)
            v /= temperature;
        const float m = *std::max_element(x.begin(), x.end());
        float sum = 0;
        for (auto& v : x) {
            v = std::exp(v - m);
            sum += v;
        }
        for (auto& v : x)
            v /= sum;
        const float coin = f32();
        if (topp <= 0 || topp >= 1) {
            float cdf = 0;
            for (int i = 0; i < n; ++i) {
                cdf += x[i];
                if (coin < cdf)
                    return i;
            }
            return n - 1;
        }
        const float cutoff = (1.0f - topp) / static_cast<float>(n - 1);
        std::vector<std::pair<float, int>> c;
        for (int i = 0; i < n; ++i)
            if (x[i] >= cutoff)
                c.emplace_back(x[i], i);
        std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first; });
        float cum = 0;
        int last = static_cast<int>(c.size()) - 1;
        for (int i = 0; i < static_cast<int>(c.size()); ++i) {
            cum += c[static_cast<std::size_t>(i)].first;
            if (cum > topp) {
                last = i;
                break;
            }
        }
        const float r = coin * cum;
        float cdf = 0;
        for (int i = 0; i <= last; ++i) {
            cdf += c[static_cast<std::size_t>(i)].first;
            if (r < cdf)
                return c[static_cast<std::size_t>(i)].second;
        }
        return c[static_cast<std::size_t>(last)].second;
    }
};

std::string sampleError(Sampler& s, std::vector<float> logits)
{
    try {
        s.sample(logits.data(), static_cast<std::int64_t>(logits.size()));
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestSamplerSafety : public QObject {
    Q_OBJECT

private slots:
    void ordinaryLogitsDrawWhatRunCDraws();
    void anyTemperatureAndTopPGivesAToken_data();
    void anyTemperatureAndTopPGivesAToken();
    void nonFiniteLogitsAreAnErrorNamingTheCause();
    void nanWeightsInGenerationAreAnErrorNamingTheModel();
};

void TestSamplerSafety::ordinaryLogitsDrawWhatRunCDraws()
{
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (const float temperature : {0.3f, 1.0f, 1.7f}) {
        for (const float topp : {0.0f, 0.5f, 0.9f, 1.0f}) {
            Sampler ours(temperature, topp, 42);
            RunC theirs{42};
            for (int draw = 0; draw < 300; ++draw) {
                std::vector<float> logits(512);
                for (auto& v : logits)
                    v = normal(rng);
                std::vector<float> copy = logits;
                QCOMPARE(ours.sample(copy.data(), 512), theirs.sample(logits, temperature, topp));
            }
        }
    }
}

void TestSamplerSafety::anyTemperatureAndTopPGivesAToken_data()
{
    QTest::addColumn<float>("temperature");
    QTest::addColumn<float>("topp");
    QTest::newRow("1e-40 (subnormal), top-p 0.9") << 1e-40f << 0.9f;
    QTest::newRow("1e-45, top-p 0.9") << 1e-45f << 0.9f;
    QTest::newRow("1e-30, no top-p") << 1e-30f << 1.0f;
    QTest::newRow("1, top-p 1e-9 (empty nucleus)") << 1.0f << 1e-9f;
    QTest::newRow("100, top-p 0.5") << 100.0f << 0.5f;
    QTest::newRow("max float") << std::numeric_limits<float>::max() << 0.9f;
}

void TestSamplerSafety::anyTemperatureAndTopPGivesAToken()
{
    QFETCH(float, temperature);
    QFETCH(float, topp);
    Sampler s(temperature, topp, 7);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<float> logits(300, 0.0f); // a flat distribution: the hardest case for a tiny top-p
        if (trial % 2)
            for (std::size_t i = 0; i < logits.size(); ++i)
                logits[i] = static_cast<float>((i * 37) % 101) * 0.5f - 20.0f;
        logits[17] += trial % 3 == 0 ? 1000.0f : 0.0f;
        logits[5] = -std::numeric_limits<float>::infinity(); // a masked token is fine
        const std::vector<float> original = logits;
        const int id = s.sample(logits.data(), static_cast<std::int64_t>(logits.size()));
        QVERIFY(id >= 0 && id < 300);
        QVERIFY(id != 5);
        const float top = *std::max_element(original.begin(), original.end());
        if (temperature < 1e-20f && std::count(original.begin(), original.end(), top) == 1) // effectively greedy
            QCOMPARE(id, Sampler::argmax(original.data(), 300));
    }
    Sampler one(temperature, topp, 1);
    float single = 3.0f;
    QCOMPARE(one.sample(&single, 1), 0);
}

void TestSamplerSafety::nonFiniteLogitsAreAnErrorNamingTheCause()
{
    for (const float temperature : {0.0f, 0.8f, 1e-40f}) {
        Sampler s(temperature, 0.9f, 1);
        std::vector<float> logits(64, 1.0f);
        logits[9] = std::numeric_limits<float>::quiet_NaN();
        const std::string nan = sampleError(s, logits);
        QVERIFY2(nan.find("NaN") != std::string::npos, nan.c_str());
        logits[9] = std::numeric_limits<float>::infinity();
        QVERIFY2(sampleError(s, logits).find("+inf") != std::string::npos, sampleError(s, logits).c_str());
        std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
        QVERIFY2(sampleError(s, logits).find("-inf") != std::string::npos, sampleError(s, logits).c_str());
    }
}

void TestSamplerSafety::nanWeightsInGenerationAreAnErrorNamingTheModel()
{
    // The final norm of a real model holds a NaN: every logit is NaN. Greedy and sampled generation both refuse.
    Model m = loadModel(test::realModelPath("stories260K-hf"));
    m.outputNorm[3] = std::numeric_limits<float>::quiet_NaN();
    const Transformer t(m);
    for (const float temperature : {0.0f, 0.9f}) {
        GenerationOptions o;
        o.steps = 8;
        o.temperature = temperature;
        try {
            generate(cpuBackend(), t, nullptr, {1}, o);
            QFAIL("generation from NaN logits succeeded");
        } catch (const Error& e) {
            const std::string what = e.what();
            QVERIFY2(what.find("NaN") != std::string::npos && what.find("model.safetensors") != std::string::npos, e.what());
        }
    }
}

QTEST_GUILESS_MAIN(TestSamplerSafety)
#include "tst_sampler_safety.moc"
