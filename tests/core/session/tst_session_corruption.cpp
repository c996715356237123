// Damaged, foreign and hostile session files: always an mla::Error naming the file, never a crash, never a silently
// wrong number.
#include "session_test_support.h"

#include <QtTest>

#include <fstream>
#include <random>

using namespace mla;

namespace {

std::string bytesOf(const std::filesystem::path& file)
{
    return test::readTextFile(file);
}

void writeBytes(const std::filesystem::path& file, const std::string& bytes)
{
    test::writeTextFile(file, bytes);
}

// The numbers of two sessions agree (strings are not compared: see bitFlipsAreErrorsOrHarmless).
bool sameNumbers(const Session& a, const Session& b)
{
    if (a.analysis.layers.size() != b.analysis.layers.size() || a.analysis.calibrationIds != b.analysis.calibrationIds
        || configToHuggingFace(a.analysis.config).dump() != configToHuggingFace(b.analysis.config).dump())
        return false;
    for (std::size_t l = 0; l < a.analysis.layers.size(); ++l) {
        const LayerAnalysis& p = a.analysis.layers[l];
        const LayerAnalysis& q = b.analysis.layers[l];
        if (!test::sameBits(p.scores.perKvHead, q.scores.perKvHead) || !test::sameBits(p.scores.perQuery, q.scores.perQuery)
            || !test::sameBits(p.scores.queryNorm, q.scores.queryNorm) || !test::sameBits(p.scores.keyNorm, q.scores.keyNorm)
            || !test::sameBits(p.scores.rotationLoss, q.scores.rotationLoss)
            || !test::sameBits(p.scores.rotationLossPerQuery, q.scores.rotationLossPerQuery) || p.selection != q.selection
            || !test::sameBits(p.weightSpectra.joint, q.weightSpectra.joint)
            || !test::sameBits(p.weightSpectra.jointError, q.weightSpectra.jointError)
            || !test::sameBits(p.activationSpectra.value, q.activationSpectra.value)
            || !test::sameBits(p.inputCovariance, q.inputCovariance))
            return false;
    }
    return a.sanity && b.sanity && test::sameBits(a.sanity->kl, b.sanity->kl)
           && a.sanity->generations[0].convertedIds == b.sanity->generations[0].convertedIds;
}

} // namespace

class TestSessionCorruption : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void truncatedFilesAreErrors();
    void bitFlipsAreErrorsOrHarmless();
    void nonHdf5FilesAreErrors();
    void foreignHdf5FilesAreErrors();
    void lyingShapesAndValuesAreErrors();
    void cliExitsWithStatus1();

private:
    Session m_session;
    std::filesystem::path m_dir;
    std::filesystem::path m_file;
    std::string m_bytes;
};

void TestSessionCorruption::initTestCase()
{
    const Model model = test::loadRealModel("stories260K");
    m_session = test::analysedSession(model);
    m_dir = test::scratchDir("session-corruption");
    m_file = m_dir / "good.h5";
    saveSession(m_session, m_file);
    m_bytes = bytesOf(m_file);
    QVERIFY(m_bytes.size() > 10000);
}

void TestSessionCorruption::truncatedFilesAreErrors()
{
    std::vector<std::size_t> cuts{0, 1, 4, 7, 8, 9, 16, 47, 48, 64, 100, 255, 256, 512, 1023, 2048, 4096};
    for (int i = 1; i < 80; ++i)
        cuts.push_back(m_bytes.size() * static_cast<std::size_t>(i) / 80);
    cuts.push_back(m_bytes.size() - 1);
    const auto file = m_dir / "truncated.h5";
    for (std::size_t cut : cuts) {
        writeBytes(file, m_bytes.substr(0, cut));
        const std::string message = test::expectError(file);
        QVERIFY2(!message.empty(), qPrintable(QStringLiteral("cut at %1").arg(cut)));
    }
}

void TestSessionCorruption::bitFlipsAreErrorsOrHarmless()
{
    // Object headers carry checksums and every array a Fletcher-32 checksum, so a flip there is an error. Flips that
    // land in free space, padding or unused header bytes change nothing; flips inside stored text (kept in HDF5's
    // global heap, which has no checksum) can only change that text. No flip may make a number silently wrong.
    std::mt19937_64 random(20250131);
    const auto file = m_dir / "flipped.h5";
    int errors = 0, harmless = 0;
    for (int i = 0; i < 400; ++i) {
        std::string bytes = m_bytes;
        const std::size_t at = random() % bytes.size();
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << (random() % 8)));
        writeBytes(file, bytes);
        try {
            const Session s = loadSession(file);
            QVERIFY2(sameNumbers(m_session, s), qPrintable(QStringLiteral("flip at byte %1 changed a number").arg(at)));
            ++harmless;
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).rfind(file.string() + ": ", 0) == 0, e.what());
            ++errors;
        }
    }
    qInfo("400 bit flips: %d errors, %d harmless", errors, harmless);
    QVERIFY(errors > 0);
}

void TestSessionCorruption::nonHdf5FilesAreErrors()
{
    const auto empty = m_dir / "empty.h5";
    writeBytes(empty, "");
    QVERIFY(!test::expectError(empty).empty());

    const auto text = m_dir / "notes.h5";
    writeBytes(text, "these are not the bytes you are looking for\n");
    QVERIFY(test::expectError(text).find("not an HDF5 file") != std::string::npos);

    std::mt19937 random(7);
    std::string noise(20000, '\0');
    for (auto& c : noise)
        c = static_cast<char>(random());
    const auto junk = m_dir / "noise.h5";
    writeBytes(junk, noise);
    QVERIFY(test::expectError(junk).find("not an HDF5 file") != std::string::npos);

    // A checkpoint given by mistake.
    const auto weights = m_dir / "model.safetensors";
    std::filesystem::copy_file(test::modelsDir() / "stories260K-hf" / "model.safetensors", weights,
                               std::filesystem::copy_options::overwrite_existing);
    QVERIFY(!test::expectError(weights).empty());

    // The HDF5 signature followed by garbage.
    const auto fake = m_dir / "signature-only.h5";
    writeBytes(fake, std::string("\x89HDF\r\n\x1a\n", 8) + noise.substr(0, 4000));
    QVERIFY(!test::expectError(fake).empty());

    QVERIFY(!test::expectError(m_dir / "does-not-exist.h5").empty());
    QVERIFY(!test::expectError(m_dir).empty()); // a folder
}

void TestSessionCorruption::foreignHdf5FilesAreErrors()
{
    // Written with the C API by "another program": a group and a dataset, none of our attributes.
    test::quietHdf5();
    const auto other = m_dir / "other-program.h5";
    {
        const hid_t f = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        QVERIFY(f >= 0);
        const hid_t g = H5Gcreate2(f, "measurements", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const hsize_t dims[1] = {16};
        const hid_t space = H5Screate_simple(1, dims, nullptr);
        const hid_t ds = H5Dcreate2(g, "temperature", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        std::vector<float> values(16, 21.5f);
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
        H5Dclose(ds);
        H5Sclose(space);
        H5Gclose(g);
        QVERIFY(H5Fclose(f) >= 0);
    }
    QVERIFY(test::expectError(other).find("not an MLA Workbench session") != std::string::npos);

    // Our format name but nothing else.
    const auto hollow = m_dir / "hollow.h5";
    {
        const hid_t f = H5Fcreate(hollow.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        QVERIFY(f >= 0);
        QVERIFY(H5Fclose(f) >= 0);
    }
    test::setRootAttribute(hollow, "format", std::string(kSessionFormatName));
    test::setRootAttribute(hollow, "schema_version", std::int64_t{1});
    QVERIFY(!test::expectError(hollow).empty());

    // A file h5py wrote, when Debian's python3 with h5py is there.
    const auto py = m_dir / "h5py.h5";
    const std::string script = "import h5py, numpy as np\n"
                               "with h5py.File('" + py.string() + "', 'w') as f:\n"
                               "    f['data'] = np.arange(10)\n    f.attrs['format'] = 'hdf5-from-python'\n";
    if (std::filesystem::exists("/usr/bin/python3")
        && std::system(("/usr/bin/python3 -c \"" + script + "\" 2>/dev/null").c_str()) == 0) {
        QVERIFY(test::expectError(py).find("not an MLA Workbench session") != std::string::npos);
    } else {
        qInfo("h5py not available: skipped the h5py-written file");
    }
}

void TestSessionCorruption::lyingShapesAndValuesAreErrors()
{
    const auto file = m_dir / "lying.h5";
    auto fresh = [&] { std::filesystem::copy_file(m_file, file, std::filesystem::copy_options::overwrite_existing); };

    // Calibration ids that claim 2^27 values but store none: no 512 MiB allocation, an error.
    fresh();
    test::replaceDataset(file, "/calibration/ids", {hsize_t(1) << 27}, H5T_STD_I32LE, nullptr, true);
    QVERIFY(test::expectError(file).find("/calibration/ids holds 0 bytes") != std::string::npos);

    // A shape beyond any bound.
    fresh();
    test::replaceDataset(file, "/calibration/ids", {hsize_t(1) << 40}, H5T_STD_I32LE, nullptr, true);
    QVERIFY(test::expectError(file).find("implausib") != std::string::npos);

    // Kept pairs for the wrong number of KV heads, and out of range.
    fresh();
    const std::int64_t three[3] = {0, 1, 2};
    test::replaceDataset(file, "/analysis/kept_pairs/layer_002", {3, 1}, H5T_STD_I32LE, three, false);
    QVERIFY(test::expectError(file).find("/analysis/kept_pairs/layer_002 has shape [3, 1]") != std::string::npos);
    fresh();
    const std::int64_t far[4] = {0, 1, 2, 99};
    test::replaceDataset(file, "/analysis/kept_pairs/layer_002", {4, 1}, H5T_STD_I32LE, far, false);
    QVERIFY(test::expectError(file).find("pair indices") != std::string::npos);

    // Offsets that do not rise, and an id outside the vocabulary.
    fresh();
    const std::int64_t offsets[3] = {0, 60, 10};
    test::replaceDataset(file, "/calibration/sequence_offsets", {3}, H5T_STD_I64LE, offsets, false);
    QVERIFY(test::expectError(file).find("sequence_offsets") != std::string::npos);
    fresh();
    std::vector<std::int64_t> ids;
    for (const auto& s : m_session.analysis.calibrationIds)
        ids.insert(ids.end(), s.begin(), s.end());
    ids[5] = 100000;
    test::replaceDataset(file, "/calibration/ids", {ids.size()}, H5T_STD_I32LE, ids.data(), false);
    QVERIFY(test::expectError(file).find("outside the vocabulary") != std::string::npos);

    // Scores stored as integers, and with a layer missing.
    fresh();
    std::vector<std::int64_t> zeros(5 * 4 * 4, 0);
    test::replaceDataset(file, "/analysis/rope_scores", {5, 4, 4}, H5T_STD_I64LE, zeros.data(), false);
    QVERIFY(test::expectError(file).find("holds integers") != std::string::npos);
    fresh();
    test::replaceDataset(file, "/analysis/rope_scores", {4, 4, 4}, H5T_IEEE_F64LE, zeros.data(), false);
    QVERIFY(test::expectError(file).find("expected [5, 4, 4]") != std::string::npos);

    // An error curve one entry short (a plot would index past its end).
    fresh();
    test::replaceDataset(file, "/analysis/error_curves/weight/key/layer_001", {3}, H5T_IEEE_F64LE, zeros.data(), false);
    QVERIFY(test::expectError(file).find("expected one more") != std::string::npos);

    // The model shape copies disagreeing with the config.
    fresh();
    {
        test::quietHdf5();
        const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        const hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
        const hid_t a = H5Aopen(g, "num_hidden_layers", H5P_DEFAULT);
        const std::int64_t layers = 4000;
        QVERIFY(H5Awrite(a, H5T_NATIVE_INT64, &layers) >= 0);
        H5Aclose(a);
        H5Gclose(g);
        QVERIFY(H5Fclose(f) >= 0);
    }
    QVERIFY(test::expectError(file).find("disagrees with config_json") != std::string::npos);
}

void TestSessionCorruption::cliExitsWithStatus1()
{
    const auto truncated = m_dir / "cli-truncated.h5";
    writeBytes(truncated, m_bytes.substr(0, m_bytes.size() / 2));
    const auto text = m_dir / "cli-text.h5";
    writeBytes(text, "hello\n");
    for (const auto& file : {truncated, text, m_dir / "cli-missing.h5"}) {
        for (bool json : {false, true}) {
            std::vector<std::string> args{"session", file.string()};
            if (json)
                args.push_back("--json");
            const test::ProcessResult r = test::runCli(args);
            QVERIFY(!r.crashed);
            QCOMPARE(r.exitCode, 1);
            QVERIFY2(r.err.find("error: " + file.string() + ": ") != std::string::npos, r.err.c_str());
            QVERIFY(r.out.empty());
        }
    }
}

QTEST_APPLESS_MAIN(TestSessionCorruption)
#include "tst_session_corruption.moc"
