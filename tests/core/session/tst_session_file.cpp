// Session files: exact round trip (in this process and in a fresh one), atomic and cancellable saves, schema versions,
// the model fingerprint check.
#include "session_test_support.h"

#include "session/analysis_json.h"
#include "util/json_util.h"
#include "util/version.h"

#include <QtTest>

using namespace mla;

namespace {

std::vector<std::filesystem::path> listing(const std::filesystem::path& dir)
{
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

class TestSessionFile : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void roundTripIsExact();
    void freshProcessSeesTheSameSession();
    void resavingIsIdempotent();
    void sessionWithoutAnalysis();
    void cancelledSaveLeavesPreviousFileUntouched();
    void failedSaveNamesTheFile();
    void newerSchemaIsRefused();
    void unknownOlderSchemaIsRefused();
    void schema4FilesOpenWithTheExactDecomposition();
    void wrongFormatIsRefused();
    void textIsKeptByteForByte();
    void variableLengthTextIsRefused();
    void fingerprintMismatchIsAWarning();

private:
    Model m_model;
    Session m_session;
    std::filesystem::path m_dir;
    std::filesystem::path m_file;
};

void TestSessionFile::initTestCase()
{
    m_model = test::loadRealModel("stories260K");
    m_session = test::analysedSession(m_model);
    QVERIFY(m_session.analysis.hasActivationSpectra());
    QVERIFY(m_session.analysis.hasCovariances());
    QCOMPARE(m_session.sanity->generations.size(), std::size_t(2));
    m_dir = test::scratchDir("session-file");
    m_file = m_dir / "analysis.h5";
    saveSession(m_session, m_file);
}

void TestSessionFile::roundTripIsExact()
{
    const Session loaded = loadSession(m_file);
    test::compareSessions(m_session, loaded);
    QCOMPARE(loaded.schemaVersion, kSessionSchemaVersion);
    QCOMPARE(loaded.toolVersion, std::string(kVersion));
    QCOMPARE(loaded.createdAt.size(), std::size_t(20)); // 2025-01-31T12:00:00Z
    QVERIFY(!loaded.sanity->generations[1].originalText.empty());
    // The summary of the reopened session carries the analysis JSON of the original, key for key.
    const auto before = sessionSummaryJson(m_session);
    const auto after = sessionSummaryJson(loaded);
    for (auto it = before.begin(); it != before.end(); ++it) {
        if (it.key() != "session")
            QVERIFY2(after.at(it.key()) == it.value(), it.key().c_str());
    }
}

void TestSessionFile::freshProcessSeesTheSameSession()
{
    const test::ProcessResult r = test::runCli({"session", m_file.string(), "--json"});
    QVERIFY2(r.exitCode == 0 && !r.crashed, r.err.c_str());
    const nlohmann::json fresh = nlohmann::json::parse(r.out);
    const nlohmann::json here = nlohmann::json::parse(dumpJson(sessionSummaryJson(loadSession(m_file))));
    QVERIFY(fresh == here);
    for (const char* key : {"rope_scores", "rope_scores_q", "rotation_loss", "kept_pairs", "spectra", "spectra_activation",
                            "error_curves", "kv_elements_per_token", "kv", "params", "settings", "results"})
        QVERIFY2(fresh.contains(key), key);
    QCOMPARE(fresh["settings"]["rope_pairs_per_layer"].get<std::vector<int>>(), (std::vector<int>{1, 2, 1, 2, 1}));
}

void TestSessionFile::resavingIsIdempotent()
{
    const Session once = loadSession(m_file);
    const auto again = m_dir / "again.h5";
    saveSession(once, again);
    test::compareSessions(once, loadSession(again));
}

void TestSessionFile::sessionWithoutAnalysis()
{
    Session s;
    s.analysis.config = m_model.config;
    s.analysis.modelPath = m_model.source.string();
    s.analysis.modelFingerprint = modelFingerprint(m_model);
    s.settings.conversion.strategy = RopeStrategy::Low;
    s.settings.conversion.ropePairs = 2;
    const auto file = m_dir / "empty.h5";
    saveSession(s, file);
    const Session loaded = loadSession(file);
    test::compareSessions(s, loaded);
    QVERIFY(loaded.analysis.layers.empty());
    const auto summary = sessionSummaryJson(loaded);
    QVERIFY(!summary.contains("rope_scores"));
    QCOMPARE(summary["settings"]["rope_strategy"].get<std::string>(), std::string("low"));
}

void TestSessionFile::cancelledSaveLeavesPreviousFileUntouched()
{
    const auto dir = test::scratchDir("session-cancel");
    const auto file = dir / "kept.h5";
    saveSession(m_session, file);
    const std::string previous = test::readTextFile(file);

    // Count the cancellation points of a full save, then cancel at each one in turn.
    int points = 0;
    saveSession(m_session, dir / "count.h5", JobControl(nullptr, [&](double, const std::string&) { ++points; }));
    std::filesystem::remove(dir / "count.h5");
    QVERIFY(points >= 8);
    for (int stopAt = 1; stopAt < points; ++stopAt) {
        std::atomic<bool> cancel{false};
        int calls = 0;
        JobControl job(&cancel, [&](double, const std::string&) {
            if (++calls == stopAt)
                cancel = true;
        });
        QVERIFY_THROWS_EXCEPTION(Cancelled, saveSession(m_session, file, job));
        QCOMPARE(test::readTextFile(file), previous);
        QCOMPARE(listing(dir), (std::vector<std::filesystem::path>{"kept.h5"}));
    }
    test::compareSessions(m_session, loadSession(file));
}

void TestSessionFile::failedSaveNamesTheFile()
{
    const auto file = m_dir / "no-such-folder" / "x.h5";
    try {
        saveSession(m_session, file);
        QFAIL("saving into a missing folder succeeded");
    } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find(file.string()) != std::string::npos, e.what());
    }
    QVERIFY(!std::filesystem::exists(file.parent_path()));
    Session noModel;
    QVERIFY_THROWS_EXCEPTION(Error, saveSession(noModel, m_dir / "no-model.h5"));
    QVERIFY(!std::filesystem::exists(m_dir / "no-model.h5"));
}

void TestSessionFile::newerSchemaIsRefused()
{
    const auto file = m_dir / "future.h5";
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "schema_version", std::int64_t{kSessionSchemaVersion + 1});
    try {
        loadSession(file);
        QFAIL("a session of a newer schema was read");
    } catch (const Error& e) {
        const std::string message = e.what();
        QVERIFY2(message.find(file.string()) != std::string::npos, e.what());
        QVERIFY2(message.find("newer MLA Workbench") != std::string::npos, e.what());
        QVERIFY2(message.find("version " + std::to_string(kSessionSchemaVersion + 1)) != std::string::npos, e.what());
    }
}

void TestSessionFile::unknownOlderSchemaIsRefused()
{
    const auto file = m_dir / "past.h5";
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "schema_version", std::int64_t{0});
    try {
        loadSession(file);
        QFAIL("a version 0 session was read");
    } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find("version 0 is not supported") != std::string::npos, e.what());
    }
}

void TestSessionFile::schema4FilesOpenWithTheExactDecomposition()
{
    // Version 5 added decomposition and power_iterations; a version 4 file (which has neither) reads them as the
    // defaults, and every other setting as it was. The attributes this file does hold are ignored for version 4.
    QVERIFY(m_session.settings.conversion.decomposition == DecompositionMethod::Randomized);
    const auto file = m_dir / "schema4.h5";
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "schema_version", std::int64_t{4});
    const Session loaded = loadSession(file);
    QCOMPARE(loaded.schemaVersion, 4);
    QVERIFY(loaded.settings.conversion.decomposition == DecompositionMethod::Exact);
    QCOMPARE(loaded.settings.conversion.powerIterations, ConversionSettings{}.powerIterations);
    Session expected = m_session;
    expected.settings.conversion.decomposition = DecompositionMethod::Exact;
    expected.settings.conversion.powerIterations = ConversionSettings{}.powerIterations;
    test::compareSettings(expected.settings, loaded.settings);
}

void TestSessionFile::wrongFormatIsRefused()
{
    const auto file = m_dir / "other-format.h5";
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "format", std::string("some-other-tool"));
    try {
        loadSession(file);
        QFAIL("a foreign format was read");
    } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find("not an MLA Workbench session") != std::string::npos, e.what());
    }
    // The version attribute as text instead of a number.
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "schema_version", std::string("1"));
    QVERIFY_THROWS_EXCEPTION(Error, loadSession(file));
}

void TestSessionFile::textIsKeptByteForByte()
{
    // Multi-byte UTF-8, trailing spaces and a text beyond the 64 KiB an object header message can hold.
    Session s = m_session;
    s.analysis.calibrationDescription = "ünïcödé 日本語 — " + std::string(100000, 'x') + "  ";
    s.sanity->generations[0].prompt = " ";
    const auto file = m_dir / "text.h5";
    saveSession(s, file);
    const Session loaded = loadSession(file);
    QCOMPARE(loaded.analysis.calibrationDescription, s.analysis.calibrationDescription);
    QCOMPARE(loaded.sanity->generations[0].prompt, std::string(" "));
    QCOMPARE(loaded.sanity->generations[1].prompt, s.sanity->generations[1].prompt);
}

void TestSessionFile::variableLengthTextIsRefused()
{
    // libhdf5 1.10 reads variable-length data from a damaged file without checks, so the reader never asks it to.
    const auto file = m_dir / "variable-length.h5";
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "tool_version", std::string(kVersion), test::TextStorage::VariableLength);
    std::string message = test::expectError(file);
    QVERIFY2(message.find("attribute 'tool_version' is a variable-length string") != std::string::npos, message.c_str());
    std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing);
    test::setRootAttribute(file, "format", std::string(kSessionFormatName), test::TextStorage::VariableLength);
    message = test::expectError(file);
    QVERIFY2(message.find("not an MLA Workbench session") != std::string::npos, message.c_str());
}

void TestSessionFile::fingerprintMismatchIsAWarning()
{
    const Session loaded = loadSession(m_file);
    QCOMPARE(sessionModelMismatch(loaded, m_model), std::string());
    const Model other = test::loadRealModel("aidreams260K");
    const std::string warning = sessionModelMismatch(loaded, other);
    QVERIFY(warning.find("fingerprint") != std::string::npos);
    QVERIFY(warning.find(loaded.analysis.modelFingerprint) != std::string::npos);

    const test::ProcessResult r = test::runCli({"session", m_file.string(), "--model", other.source.string()});
    QCOMPARE(r.exitCode, 0);
    QVERIFY2(r.err.find("warning:") != std::string::npos, r.err.c_str());
    const test::ProcessResult same = test::runCli({"session", m_file.string(), "--model", m_model.source.string()});
    QCOMPARE(same.exitCode, 0);
    QVERIFY2(same.err.empty(), same.err.c_str());
}

QTEST_APPLESS_MAIN(TestSessionFile)
#include "tst_session_file.moc"
