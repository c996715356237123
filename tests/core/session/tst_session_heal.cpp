// Sessions keep a heal (schema 3): its settings and results survive a save and a reopen bit for bit, h5py reads them
// with no code of ours, and files of schema 2 (before heals were stored) still open.
#include "session_test_support.h"

#include "engine/transformer.h"
#include "heal/heal_data.h"

#include <QProcess>
#include <QtTest>

#include <cstdio>
#include <cstdlib>
#include <sstream>

using namespace mla;

namespace {

constexpr const char* kHealPython = "/usr/bin/python3";

bool sameReport(const HealReport& a, const HealReport& b)
{
    auto sameQuality = [](const std::optional<HealQuality>& x, const std::optional<HealQuality>& y) {
        if (x.has_value() != y.has_value())
            return false;
        return !x
               || (test::sameBits(x->kl, y->kl) && test::sameBits(x->perplexity, y->perplexity)
                   && test::sameBits(x->originalPerplexity, y->originalPerplexity)
                   && test::sameBits(x->top1Agreement, y->top1Agreement) && x->positions == y->positions);
    };
    if (a.layers.size() != b.layers.size())
        return false;
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        const LayerHealReport& p = a.layers[i];
        const LayerHealReport& q = b.layers[i];
        if (p.layer != q.layer || !test::sameBits(p.heldOutBefore, q.heldOutBefore) || !test::sameBits(p.heldOutAfter, q.heldOutAfter)
            || !test::sameBits(p.learningRate, q.learningRate) || p.steps != q.steps || p.bestStep != q.bestStep
            || p.stoppedEarly != q.stoppedEarly || p.diverged != q.diverged || !test::sameBits(p.seconds, q.seconds))
            return false;
    }
    return sameQuality(a.before, b.before) && sameQuality(a.after, b.after) && a.dataDescription == b.dataDescription
           && a.trainTokens == b.trainTokens && a.heldOutTokens == b.heldOutTokens && a.layersHealed == b.layersHealed
           && a.cancelled == b.cancelled && test::sameBits(a.seconds, b.seconds);
}

} // namespace

class TestSessionHeal : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void healRoundTripIsExact();
    void relativeAndAbsoluteLearningRates();
    void schema2FilesStillOpen();
    void damagedHealIsAnError();
    void h5pyReadsTheHeal();
    void cliShowsTheHeal();

private:
    Model m_model;
    Session m_session; // no analysis (cheap): the settings, a check of the conversion and a real heal
    std::filesystem::path m_dir;
    std::filesystem::path m_file;
};

void TestSessionHeal::initTestCase()
{
    m_model = test::loadRealModel("stories260K");
    m_dir = test::scratchDir("session-heal");
    m_file = m_dir / "healed.h5";

    m_session.analysis.config = m_model.config;
    m_session.analysis.modelPath = m_model.source.string();
    m_session.analysis.modelFingerprint = modelFingerprint(m_model);
    m_session.settings.conversion.latentDim = 8;

    // A real (tiny) heal of a real conversion: 3 steps per layer on 6 sampled sequences of 24 tokens.
    ConversionSettings high;
    high.strategy = RopeStrategy::High;
    high.ropePairs = 1;
    high.latentDim = 8;
    const Model converted = convertModel(cpuBackend(), m_model, planConversion(m_model.config, high, selectPairs(m_model.config, high, nullptr)));
    HealOptions options;
    options.steps = 3;
    options.batchSequences = 2;
    options.seed = 5;
    options.data.tokens = 6 * 24;
    options.data.sequenceLength = 24;
    const HealData data = prepareHealData(Transformer(m_model), nullptr, options);
    HealResult healed = healModel(m_model, converted, data, options);
    QCOMPARE(healed.report.layersHealed, m_model.config.layers);
    QVERIFY(healed.report.before && healed.report.after);

    SanityOptions sanity;
    sanity.prompts = {""}; // from BOS: no tokenizer needed
    sanity.generationSteps = 6;
    const TokenSequences eval = test::sampleSequences(Transformer(m_model), 1, 16, 3);
    m_session.sanity = runSanityCheck(cpuBackend(), Transformer(m_model), Transformer(converted), nullptr, eval, sanity);
    SessionHeal heal;
    heal.options = options;
    heal.start = "converted";
    heal.report = healed.report;
    heal.sanity = runSanityCheck(cpuBackend(), Transformer(m_model), Transformer(healed.model), nullptr, eval, sanity);
    m_session.heal = heal;
    saveSession(m_session, m_file);
}

void TestSessionHeal::healRoundTripIsExact()
{
    const Session loaded = loadSession(m_file);
    QCOMPARE(loaded.schemaVersion, kSessionSchemaVersion);
    QVERIFY(loaded.heal.has_value());
    const SessionHeal& a = *m_session.heal;
    const SessionHeal& b = *loaded.heal;
    QCOMPARE(b.start, a.start);
    QCOMPARE(b.options.steps, a.options.steps);
    QCOMPARE(b.options.data.tokens, a.options.data.tokens);
    QCOMPARE(b.options.data.sequenceLength, a.options.data.sequenceLength);
    QCOMPARE(b.options.batchSequences, a.options.batchSequences);
    QCOMPARE(b.options.seed, a.options.seed);
    QCOMPARE(b.options.learningRate.has_value(), false);
    QVERIFY(test::sameBits(b.options.relativeLearningRate, a.options.relativeLearningRate));
    QCOMPARE(b.options.data.source, a.options.data.source);
    QVERIFY(sameReport(a.report, b.report));
    QVERIFY(b.sanity.has_value());
    QVERIFY(test::sameBits(b.sanity->kl, a.sanity->kl));
    QCOMPARE(b.sanity->generations.size(), a.sanity->generations.size());
    QCOMPARE(b.sanity->generations[0].convertedIds, a.sanity->generations[0].convertedIds);
    // The unhealed check stays where it was, beside the heal's own.
    test::compareSessions(m_session, loaded);
    // `session --json`: the heal as `convert --heal --json` reports it.
    const auto j = sessionSummaryJson(loaded);
    QVERIFY(j.contains("heal"));
    QCOMPARE(j["heal"]["layers"].size(), a.report.layers.size());
    QCOMPARE(j["heal"]["after"]["kl"].get<double>(), a.report.after->kl);
    QCOMPARE(j["heal"]["steps"].get<std::int64_t>(), std::int64_t{3});
    QVERIFY(j["heal"].contains("sanity"));
}

void TestSessionHeal::relativeAndAbsoluteLearningRates()
{
    // A cancelled heal with an absolute rate, a text source and no model measurements: every optional part absent.
    Session s = m_session;
    s.heal->options.learningRate = 0.003;
    s.heal->options.data.source = CalibrationOptions::Source::Text;
    s.heal->options.data.file = "/tmp/heal text.txt";
    s.heal->report.layers.resize(2);
    s.heal->report.layersHealed = 2;
    s.heal->report.cancelled = true;
    s.heal->report.before.reset();
    s.heal->report.after.reset();
    s.heal->sanity.reset();
    const auto file = m_dir / "cancelled.h5";
    saveSession(s, file);
    const Session loaded = loadSession(file);
    QVERIFY(loaded.heal.has_value());
    QCOMPARE(loaded.heal->options.learningRate, std::optional<double>(0.003));
    QCOMPARE(loaded.heal->options.data.source, CalibrationOptions::Source::Text);
    QCOMPARE(loaded.heal->options.data.file, std::filesystem::path("/tmp/heal text.txt"));
    QVERIFY(sameReport(s.heal->report, loaded.heal->report));
    QVERIFY(!loaded.heal->sanity);

    // No heal at all: none read back.
    Session plain = m_session;
    plain.heal.reset();
    saveSession(plain, m_dir / "plain.h5");
    QVERIFY(!loadSession(m_dir / "plain.h5").heal);
}

void TestSessionHeal::schema2FilesStillOpen()
{
    // A schema 2 file (the layout before heals were stored): everything else of it opens as before.
    Session plain = m_session;
    plain.heal.reset();
    const auto file = m_dir / "schema2.h5";
    saveSession(plain, file);
    test::setRootAttribute(file, "schema_version", std::int64_t{2});
    const Session loaded = loadSession(file);
    QCOMPARE(loaded.schemaVersion, 2);
    QVERIFY(!loaded.heal);
    test::compareSessions(plain, loaded);
}

void TestSessionHeal::damagedHealIsAnError()
{
    // A layer index outside the model in /results/heal/layer: an error naming the file and the dataset.
    Session s = m_session;
    s.heal->report.layers[0].layer = m_model.config.layers + 3;
    const auto file = m_dir / "bad-layer.h5";
    saveSession(s, file);
    try {
        loadSession(file);
        QFAIL("a heal of a layer outside the model was read");
    } catch (const Error& e) {
        const std::string message = e.what();
        QVERIFY2(message.find(file.string()) != std::string::npos, e.what());
        QVERIFY2(message.find("/results/heal/layer") != std::string::npos, e.what());
    }
}

void TestSessionHeal::h5pyReadsTheHeal()
{
    if (!std::filesystem::exists(kHealPython))
        QSKIP("no /usr/bin/python3 (Debian's python3 with python3-h5py is needed for this test)");
    const char* script = R"(
import sys
try:
    import h5py, numpy as np
except ImportError:
    sys.exit(77)
with h5py.File(sys.argv[1], "r") as f:
    h = f["results/heal"]
    print(int(f.attrs["schema_version"]))
    print(h.attrs["start"].decode(), int(h.attrs["steps"]), int(h.attrs["seed"]), int(h.attrs["tokens"]))
    print(" ".join(float(v).hex() for v in h["held_out_loss_before"][()]))
    print(" ".join(float(v).hex() for v in h["held_out_loss_after"][()]))
    print(float(h["before/kl_divergence"][()]).hex(), float(h["after/kl_divergence"][()]).hex())
    print(float(h["sanity/kl_divergence"][()]).hex(), float(f["results/sanity/kl_divergence"][()]).hex())
)";
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(kHealPython, {QStringLiteral("-c"), QString::fromUtf8(script), QString::fromStdString(m_file.string())});
    QVERIFY(p.waitForStarted(10000) && p.waitForFinished(60000));
    const std::string output = p.readAll().toStdString();
    if (p.exitCode() == 77)
        QSKIP("/usr/bin/python3 has no h5py/numpy (install python3-h5py)");
    QVERIFY2(p.exitCode() == 0, output.c_str());

    auto hex = [](double v) {
        char text[64];
        std::snprintf(text, sizeof text, "%a", v);
        return std::string(text);
    };
    const SessionHeal& h = *m_session.heal;
    std::istringstream lines(output);
    std::string line;
    std::getline(lines, line);
    QCOMPARE(std::stoi(line), kSessionSchemaVersion);
    std::getline(lines, line);
    QCOMPARE(line, "converted 3 5 " + std::to_string(h.options.data.tokens));
    auto readDoubles = [&lines]() {
        std::string l;
        std::getline(lines, l);
        std::istringstream in(l);
        std::vector<double> out;
        std::string word;
        while (in >> word)
            out.push_back(std::strtod(word.c_str(), nullptr)); // strtod reads Python's hex floats exactly
        return out;
    };
    const std::vector<double> before = readDoubles();
    const std::vector<double> after = readDoubles();
    QCOMPARE(before.size(), h.report.layers.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
        QVERIFY2(test::sameBits(before[i], h.report.layers[i].heldOutBefore), hex(before[i]).c_str());
        QVERIFY2(test::sameBits(after[i], h.report.layers[i].heldOutAfter), hex(after[i]).c_str());
    }
    const std::vector<double> kl = readDoubles();
    QCOMPARE(kl.size(), std::size_t(2));
    QVERIFY(test::sameBits(kl[0], h.report.before->kl));
    QVERIFY(test::sameBits(kl[1], h.report.after->kl));
    const std::vector<double> checks = readDoubles();
    QCOMPARE(checks.size(), std::size_t(2));
    QVERIFY(test::sameBits(checks[0], h.sanity->kl));
    QVERIFY(test::sameBits(checks[1], m_session.sanity->kl));
    QVERIFY(h.sanity->kl != m_session.sanity->kl); // the healed and unhealed checks are different numbers
}

void TestSessionHeal::cliShowsTheHeal()
{
    // `session FILE`: one line for the heal and one for its held-out KL; `--json`: the heal object.
    const test::ProcessResult text = test::runCli({"session", m_file.string()});
    QVERIFY2(text.exitCode == 0 && !text.crashed, text.err.c_str());
    QVERIFY2(text.out.find("heal            5 of 5 layers from the converted start, 3 steps per layer") != std::string::npos,
             text.out.c_str());
    QVERIFY2(text.out.find("heal held-out   KL ") != std::string::npos, text.out.c_str());
    QVERIFY2(text.out.find("healed check    perplexity ") != std::string::npos, text.out.c_str());
    const test::ProcessResult json = test::runCli({"session", m_file.string(), "--json"});
    QVERIFY2(json.exitCode == 0, json.err.c_str());
    const auto j = nlohmann::json::parse(json.out);
    QCOMPARE(j["heal"]["layers_healed"].get<std::int64_t>(), m_session.heal->report.layersHealed);
    QCOMPARE(j["heal"]["before"]["kl"].get<double>(), m_session.heal->report.before->kl);
}

QTEST_APPLESS_MAIN(TestSessionHeal)
#include "tst_session_heal.moc"
