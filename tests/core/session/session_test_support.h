#pragma once

// Shared by the session tests: a real analysed session of the demo model, exact comparison of two sessions, and raw
// HDF5 edits for crafting damaged, foreign and future files.
#include "backend/compute_backend.h"
#include "analysis/analyzer.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "conversion/sanity_check.h"
#include "session/session.h"
#include "tokenizer/tokenizer.h"

#if __has_include(<hdf5.h>)
#include <hdf5.h>
#else
#include <hdf5/serial/hdf5.h> // Debian installs the serial library's headers here
#endif

#include <QtTest>

#include <cstring>

namespace mla::test {

// The demo model analysed on two short sampled sequences (weight and activation spectra, covariances kept), with
// workbench settings that differ from the analysed ones and a real conversion check, so every part of the schema
// holds data.
inline Session analysedSession(const Model& model)
{
    AnalysisOptions options;
    options.calibration.samples = 2;
    options.calibration.sequenceLength = 32;
    options.settings.ropePairs = 1;
    Session s = makeSession(model, analyzeModel(cpuBackend(), model, nullptr, options));
    s.settings.conversion.strategy = RopeStrategy::Uniform;
    s.settings.conversion.ropePairsPerLayer = {1, 2, 1, 2, 1};
    s.settings.conversion.latentPerLayer = {8, 16, 8, 16, 12};
    s.settings.conversion.uniformStart = 1;
    s.settings.conversion.method = LatentMethod::Split;
    s.settings.conversion.targetSaving = 0.625;
    s.settings.conversion.sigma = SigmaPlacement::Sqrt;
    s.settings.conversion.decomposition = DecompositionMethod::Randomized;
    s.settings.conversion.powerIterations = 3;
    s.settings.conversion.activationAware = true;
    s.settings.conversion.balanceKeyValue = true;
    s.settings.conversion.chooseBalance = true;
    s.settings.conversion.refit = true;
    s.settings.conversion.refitRidge = 0.003;
    s.settings.conversion.allocate = true;
    s.settings.conversion.kvBudget = 123;
    s.settings.conversion.preset = "best";
    s.settings.calibration.source = CalibrationOptions::Source::Ids;
    s.settings.calibration.file = "/tmp/calibration ids.txt";
    s.settings.calibration.samples = 3;
    s.settings.calibration.sequenceLength = 48;
    s.settings.calibration.seed = 17;
    s.settings.calibration.temperature = 0.5f;
    s.settings.lockedLayers = {false, true, false, false, true};

    ConversionSettings high;
    high.strategy = RopeStrategy::High;
    high.ropePairs = 1;
    high.latentDim = 8;
    const ConversionPlan plan = planConversion(model.config, high, selectPairs(model.config, high, nullptr));
    const Transformer original(model);
    const Transformer converted(convertModel(cpuBackend(), model, plan));
    std::unique_ptr<Tokenizer> tokenizer;
    if (auto file = findTokenizerNextTo(model.source))
        tokenizer = loadTokenizer(*file);
    SanityOptions sanity;
    sanity.prompts = {"", "Once upon a time"};
    sanity.generationSteps = 12;
    sanity.cacheFormat = KvCacheFormat::withDefaultRope({CacheFormat::Int4, 16});
    s.sanity = runSanityCheck(cpuBackend(), original, converted, tokenizer.get(), sampleSequences(original, 2, 24, 3), sanity);
    return s;
}

inline bool sameBits(const std::vector<double>& a, const std::vector<double>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

inline bool sameBits(const MatrixXdRM& a, const MatrixXdRM& b)
{
    return a.rows() == b.rows() && a.cols() == b.cols()
           && (a.size() == 0 || std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)) == 0);
}

inline bool sameBits(double a, double b)
{
    return std::memcmp(&a, &b, sizeof a) == 0;
}

inline void compareSettings(const ConversionSettings& a, const ConversionSettings& b)
{
    QCOMPARE(a.strategy, b.strategy);
    QCOMPARE(a.ropePairs, b.ropePairs);
    QCOMPARE(a.ropePairsPerLayer, b.ropePairsPerLayer);
    QCOMPARE(a.uniformStart, b.uniformStart);
    QCOMPARE(a.method, b.method);
    QCOMPARE(a.latentDim, b.latentDim);
    QCOMPARE(a.latentPerLayer, b.latentPerLayer);
    QVERIFY(sameBits(a.targetSaving, b.targetSaving));
    QCOMPARE(a.sigma, b.sigma);
    QCOMPARE(a.decomposition, b.decomposition);
    QCOMPARE(a.powerIterations, b.powerIterations);
    QCOMPARE(a.activationAware, b.activationAware);
    QCOMPARE(a.balanceKeyValue, b.balanceKeyValue);
    QCOMPARE(a.chooseBalance, b.chooseBalance);
    QCOMPARE(a.refit, b.refit);
    QVERIFY(sameBits(a.refitRidge, b.refitRidge));
    QCOMPARE(a.allocate, b.allocate);
    QCOMPARE(a.kvBudget, b.kvBudget);
    QCOMPARE(a.preset, b.preset);
    QVERIFY(a == b);
}

inline void compareSettings(const Settings& a, const Settings& b)
{
    compareSettings(a.conversion, b.conversion);
    QCOMPARE(a.calibration.source, b.calibration.source);
    QCOMPARE(a.calibration.file, b.calibration.file);
    QCOMPARE(a.calibration.samples, b.calibration.samples);
    QCOMPARE(a.calibration.sequenceLength, b.calibration.sequenceLength);
    QCOMPARE(a.calibration.seed, b.calibration.seed);
    QCOMPARE(a.calibration.temperature, b.calibration.temperature);
    QCOMPARE(a.lockedLayers, b.lockedLayers);
    QVERIFY(a == b);
}

// Everything but the save metadata (created, tool version, schema version), exactly: doubles bit for bit.
inline void compareSessions(const Session& a, const Session& b)
{
    const AnalysisResult& x = a.analysis;
    const AnalysisResult& y = b.analysis;
    QCOMPARE(configToHuggingFace(x.config).dump(), configToHuggingFace(y.config).dump());
    QCOMPARE(x.config.layers, y.config.layers);
    QCOMPARE(x.config.kvHeads, y.config.kvHeads);
    QCOMPARE(x.config.qkvBias, y.config.qkvBias);
    QCOMPARE(x.config.bosId, y.config.bosId);
    QCOMPARE(x.config.eosIds, y.config.eosIds);
    QVERIFY(sameBits(x.config.rope.theta, y.config.rope.theta));
    QVERIFY(sameBits(x.config.rmsEps, y.config.rmsEps));
    QCOMPARE(x.modelPath, y.modelPath);
    QCOMPARE(x.modelFingerprint, y.modelFingerprint);
    QCOMPARE(x.calibrationDescription, y.calibrationDescription);
    QCOMPARE(x.calibrationSource, y.calibrationSource);
    QCOMPARE(x.calibrationIds, y.calibrationIds);
    QCOMPARE(x.calibrationTokens, y.calibrationTokens);
    QCOMPARE(x.scoreContext, y.scoreContext);
    compareSettings(x.settings, y.settings);
    QCOMPARE(x.layers.size(), y.layers.size());
    for (std::size_t l = 0; l < x.layers.size(); ++l) {
        const LayerAnalysis& p = x.layers[l];
        const LayerAnalysis& q = y.layers[l];
        QVERIFY(sameBits(p.scores.queryNorm, q.scores.queryNorm));
        QVERIFY(sameBits(p.scores.keyNorm, q.scores.keyNorm));
        QVERIFY(sameBits(p.scores.perQuery, q.scores.perQuery));
        QVERIFY(sameBits(p.scores.perKvHead, q.scores.perKvHead));
        QVERIFY(sameBits(p.scores.rotationLossPerQuery, q.scores.rotationLossPerQuery));
        QVERIFY(sameBits(p.scores.rotationLoss, q.scores.rotationLoss));
        QCOMPARE(p.selection, q.selection);
        for (auto s : {&KeyValueSpectra::joint, &KeyValueSpectra::key, &KeyValueSpectra::value, &KeyValueSpectra::jointError,
                              &KeyValueSpectra::keyError, &KeyValueSpectra::valueError}) {
            QVERIFY(sameBits(p.weightSpectra.*s, q.weightSpectra.*s));
            QVERIFY(sameBits(p.activationSpectra.*s, q.activationSpectra.*s));
        }
        QVERIFY(sameBits(p.inputCovariance, q.inputCovariance));
    }
    compareSettings(a.settings, b.settings);
    QCOMPARE(a.modelConfigJson, b.modelConfigJson);
    QCOMPARE(a.parameterCount, b.parameterCount);
    QCOMPARE(a.sanity.has_value(), b.sanity.has_value());
    if (a.sanity) {
        const SanityReport& r = *a.sanity;
        const SanityReport& t = *b.sanity;
        QVERIFY(sameBits(r.originalPpl, t.originalPpl));
        QVERIFY(sameBits(r.convertedPpl, t.convertedPpl));
        QVERIFY(sameBits(r.kl, t.kl));
        QVERIFY(sameBits(r.top1Agreement, t.top1Agreement));
        QCOMPARE(r.evaluatedTokens, t.evaluatedTokens);
        QVERIFY(sameBits(r.originalKvBytesPerToken, t.originalKvBytesPerToken));
        QVERIFY(sameBits(r.convertedKvBytesPerToken, t.convertedKvBytesPerToken));
        QCOMPARE(r.withCache.format, t.withCache.format);
        QVERIFY(sameBits(r.withCache.ppl, t.withCache.ppl));
        QVERIFY(sameBits(r.withCache.kl, t.withCache.kl));
        QVERIFY(sameBits(r.withCache.top1Agreement, t.withCache.top1Agreement));
        QVERIFY(sameBits(r.withCache.kvBytesPerToken, t.withCache.kvBytesPerToken));
        QVERIFY(sameBits(r.originalBf16KvBytesPerToken, t.originalBf16KvBytesPerToken));
        QCOMPARE(r.generations.size(), t.generations.size());
        for (std::size_t i = 0; i < r.generations.size(); ++i) {
            QCOMPARE(r.generations[i].prompt, t.generations[i].prompt);
            QCOMPARE(r.generations[i].originalIds, t.generations[i].originalIds);
            QCOMPARE(r.generations[i].convertedIds, t.generations[i].convertedIds);
            QCOMPARE(r.generations[i].originalText, t.generations[i].originalText);
            QCOMPARE(r.generations[i].convertedText, t.generations[i].convertedText);
            QCOMPARE(r.generations[i].firstDifference, t.generations[i].firstDifference);
        }
    }
}

// Raw HDF5 edits, with the library's error printing off (a failed edit fails the test, not a page of stderr).
inline void quietHdf5()
{
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

inline void setRootAttribute(const std::filesystem::path& file, const char* name, std::int64_t value)
{
    quietHdf5();
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    QVERIFY(f >= 0);
    if (H5Aexists(f, name) > 0)
        H5Adelete(f, name);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attr = H5Acreate2(f, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    QVERIFY(attr >= 0);
    QVERIFY(H5Awrite(attr, H5T_NATIVE_INT64, &value) >= 0);
    H5Aclose(attr);
    H5Sclose(space);
    QVERIFY(H5Fclose(f) >= 0);
}

// Loads `file` expecting an Error that names it; returns the message (empty and a test failure otherwise).
inline std::string expectError(const std::filesystem::path& file)
{
    // Counted before and after rather than against zero: the library's own count is not zero in every build.
    const std::int64_t openBefore = openHdf5Objects();
    try {
        loadSession(file);
    } catch (const Error& e) {
        if (const std::int64_t open = openHdf5Objects(); open != openBefore) {
            qWarning("%lld HDF5 objects left open after failing to load %s", static_cast<long long>(open - openBefore), file.c_str());
            return {};
        }
        const std::string message = e.what();
        if (message.rfind(file.string() + ": ", 0) != 0)
            qWarning("error does not start with the file name: %s", e.what());
        return message.rfind(file.string() + ": ", 0) == 0 ? message : std::string();
    }
    qWarning("%s loaded", file.c_str());
    return {};
}

// Text as session files hold it (fixed-length UTF-8), or as h5py writes it by default (variable-length).
enum class TextStorage { Fixed, VariableLength };

inline void setRootAttribute(const std::filesystem::path& file, const char* name, const std::string& value,
                             TextStorage storage = TextStorage::Fixed)
{
    quietHdf5();
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    QVERIFY(f >= 0);
    if (H5Aexists(f, name) > 0)
        H5Adelete(f, name);
    const hid_t type = H5Tcopy(H5T_C_S1);
    const bool variable = storage == TextStorage::VariableLength;
    H5Tset_size(type, variable ? H5T_VARIABLE : std::max<std::size_t>(value.size(), 1));
    H5Tset_cset(type, H5T_CSET_UTF8);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attr = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* text = value.c_str();
    QVERIFY(attr >= 0);
    QVERIFY(H5Awrite(attr, type, variable ? static_cast<const void*>(&text) : static_cast<const void*>(text)) >= 0);
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    QVERIFY(H5Fclose(f) >= 0);
}

// Replaces dataset `path` by one of the given shape and type; `data` (may be null: chunks left unwritten) is int64.
inline void replaceDataset(const std::filesystem::path& file, const char* path, std::vector<hsize_t> dims, hid_t fileType,
                           const std::int64_t* data, bool chunked)
{
    quietHdf5();
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    QVERIFY(f >= 0);
    QVERIFY(H5Ldelete(f, path, H5P_DEFAULT) >= 0);
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunked) {
        std::vector<hsize_t> chunk(dims.size(), 1);
        chunk.back() = std::min<hsize_t>(dims.back(), 1024);
        H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    }
    const hid_t ds = H5Dcreate2(f, path, fileType, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    QVERIFY(ds >= 0);
    if (data)
        QVERIFY(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    QVERIFY(H5Fclose(f) >= 0);
}

} // namespace mla::test
