// The pipeline: every user action once, in core, used by the CLI and the workbench alike. Each action computes on the
// backend of its execution context and nowhere else (two jobs on two backends at once each see only their own), with
// the CPU's results unchanged; one tokenizer rule; the same folder, model card included, whether a conversion is
// written streaming (CLI) or from memory (workbench); allocation honours locks and fixed pairs; sessions round-trip
// the whole settings value and older files still open.
#include "common/model_fixtures.h"
#include "common/recording_backend.h"
#include "common/test_support.h"
#include "conversion/presets.h"
#include "pipeline/allocate.h"
#include "pipeline/analyse.h"
#include "pipeline/check.h"
#include "pipeline/convert.h"
#include "pipeline/evaluate.h"
#include "pipeline/open_model.h"
#include "pipeline/sessions.h"
#include "settings/settings_rules.h"
#include "util/error.h"

#include <QtTest>

#include <omp.h>

#include <cstring>
#include <fstream>
#include <thread>

using namespace mla;
using namespace mla::pipeline;
namespace fs = std::filesystem;

namespace {

pipeline::OpenedModel demo()
{
    return openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
}

Settings quick(RopeStrategy strategy = RopeStrategy::TwoNorm)
{
    Settings s;
    s.conversion.strategy = strategy;
    s.calibration.samples = 2;
    s.calibration.sequenceLength = 32;
    return s;
}

std::string fileText(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

bool sameBits(const std::vector<double>& a, const std::vector<double>& b)
{
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

std::string errorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestPipeline : public QObject {
    Q_OBJECT
    pipeline::OpenedModel m_demo;

private Q_SLOTS:
    void initTestCase()
    {
        m_demo = demo();
        QVERIFY(m_demo.model && m_demo.tokenizer);
        QVERIFY(m_demo.warnings.empty());
    }

    void everyActionComputesOnItsContextsBackend()
    {
        auto recording = std::make_shared<test::RecordingBackend>();
        const ExecutionContext on(recording);
        const AnalysisPtr a = analyse(m_demo, quick(), on);
        const std::int64_t afterAnalysis = recording->calls();
        QVERIFY(afterAnalysis > 0);
        // The CPU backend's results are the same numbers, bit for bit.
        const AnalysisPtr cpu = analyse(m_demo, quick(), ExecutionContext());
        for (std::size_t l = 0; l < a->layers.size(); ++l) {
            QVERIFY(sameBits(a->layers[l].weightSpectra.joint, cpu->layers[l].weightSpectra.joint));
            QVERIFY(sameBits(a->layers[l].activationSpectra.key, cpu->layers[l].activationSpectra.key));
        }
        Settings s = quick();
        s.conversion.latentDim = 16;
        const ConversionOutcome converted = convertInMemory(m_demo, a, s, on);
        const std::int64_t afterConversion = recording->calls();
        QVERIFY(afterConversion > afterAnalysis);
        CheckOptions check;
        check.sequences = 1;
        check.sequenceLength = 24;
        check.generationSteps = 8;
        const CheckOutcome checked = pipeline::check(m_demo, *converted.converted, check, on);
        QVERIFY(recording->calls() > afterConversion);
        QVERIFY(checked.report.evaluatedTokens > 0);
        const CheckOutcome checkedCpu = pipeline::check(m_demo, *convertInMemory(m_demo, cpu, s, ExecutionContext()).converted, check,
                                                        ExecutionContext());
        QCOMPARE(checked.report.convertedPpl, checkedCpu.report.convertedPpl);
        QCOMPARE(checked.report.kl, checkedCpu.report.kl);
        const std::int64_t beforeGenerate = recording->calls();
        GenerationOptions g;
        g.steps = 8;
        generateText(m_demo, MlaForm::Absorbed, startIds(m_demo, ""), g, {}, on);
        QVERIFY(recording->calls() > beforeGenerate);
    }

    void concurrentJobsKeepTheirOwnBackends()
    {
        // What a device change during a job amounts to: two jobs, each started with its own backend, running at once.
        // Neither sees a call meant for the other (there is no process-wide backend to change under them).
        auto first = std::make_shared<test::RecordingBackend>("first");
        auto second = std::make_shared<test::RecordingBackend>("second");
        const AnalysisPtr a = analyse(m_demo, quick(RopeStrategy::High), ExecutionContext());
        Settings s = quick(RopeStrategy::High);
        s.conversion.activationAware = true; // the sequential conversion: many backend calls per layer
        std::thread other([&] { convertInMemory(m_demo, a, s, ExecutionContext(second)); });
        convertInMemory(m_demo, a, s, ExecutionContext(first));
        other.join();
        QVERIFY(first->calls() > 0);
        QCOMPARE(first->calls(), second->calls()); // the same work, each on its own backend
    }

    void tokenizerLargerThanTheVocabularyIsAnError()
    {
        const fs::path dir = test::scratchDir("pipeline_tokenizer");
        fs::copy_file(test::demoDir() / "stories260K.bin", dir / "stories260K.bin");
        const fs::path poem = test::modelsDir() / "poem5L" / "poem_tok.bin";
        // Asked for by name, found next to the model: the same error, naming the tokenizer file.
        std::string e = errorOf([&] { openModel({dir / "stories260K.bin", poem, true}, ExecutionContext()); });
        QVERIFY2(e.find(poem.string()) != std::string::npos && e.find("more than the model's vocabulary of 512") != std::string::npos, e.c_str());
        fs::copy_file(poem, dir / "tokenizer.bin");
        e = errorOf([&] { openModel({dir / "stories260K.bin", std::nullopt, true}, ExecutionContext()); });
        QVERIFY2(e.find((dir / "tokenizer.bin").string()) != std::string::npos
                     && e.find("tokenizer has 2048 tokens, more than the model's vocabulary of 512") != std::string::npos,
                 e.c_str());
        // The weights alone open (a reference model, a session check).
        QVERIFY(openModel({dir / "stories260K.bin", std::nullopt, false}, ExecutionContext()).model);
        // A tokenizer next to the model that cannot be read is left out with a warning.
        test::writeTextFile(dir / "tokenizer.bin", "not a tokenizer");
        const pipeline::OpenedModel opened = openModel({dir / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        QVERIFY(opened.model && !opened.tokenizer);
        QCOMPARE(opened.warnings.size(), std::size_t(1));
        QVERIFY(opened.warnings[0].rfind("ignoring the tokenizer next to the model: ", 0) == 0);
    }

    void streamingAndInMemoryWriteTheSameFolder()
    {
        const fs::path dir = test::scratchDir("pipeline_folders");
        Settings s = quick(RopeStrategy::High);
        s.conversion.latentDim = 16;
        ExportRequest cli;
        cli.folder = dir / "streamed";
        const FolderOutcome streamed = convertToFolder(m_demo, nullptr, s, cli, std::nullopt, ExecutionContext());
        QVERIFY(!streamed.conversion.analysis); // high needs no calibration
        const ConversionOutcome inMemory = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        ExportRequest gui;
        gui.folder = dir / "from-memory";
        const ExportOutcome exported = exportConversion(m_demo, inMemory, gui, std::nullopt, ExecutionContext());
        QCOMPARE(exported.folder, gui.folder);
        // Every file is the same: weights, config, tokenizer and the model card.
        std::vector<std::string> names;
        for (const auto& entry : fs::recursive_directory_iterator(cli.folder)) {
            if (entry.is_regular_file()) // an MLA export also carries recovery/ with the recipe
                names.push_back(entry.path().lexically_relative(cli.folder).generic_string());
        }
        std::sort(names.begin(), names.end());
        QVERIFY(std::find(names.begin(), names.end(), "README.md") != names.end());
        QVERIFY(std::find(names.begin(), names.end(), "model.safetensors") != names.end());
        for (const std::string& name : names)
            QVERIFY2(fileText(cli.folder / name) == fileText(gui.folder / name), name.c_str());
        const std::string card = fileText(gui.folder / "README.md");
        QVERIFY(card.find("with Multi-head Latent Attention") != std::string::npos);
        QVERIFY(card.find("Not measured at export") != std::string::npos);
        QCOMPARE(streamed.conversion.plan.converted.kvElementsPerToken(), inMemory.plan.converted.kvElementsPerToken());
    }

    void checkedExportsQuoteTheirMeasurements()
    {
        const fs::path dir = test::scratchDir("pipeline_checked");
        Settings s = quick(RopeStrategy::High);
        s.conversion.latentDim = 16;
        CheckOptions check;
        check.sequences = 1;
        check.sequenceLength = 24;
        check.generationSteps = 8;
        ExportRequest request;
        request.folder = dir / "checked";
        const FolderOutcome written = convertToFolder(m_demo, nullptr, s, request, check, ExecutionContext());
        QVERIFY(written.written.check);
        std::string card = fileText(request.folder / "README.md");
        QVERIFY2(card.find("with the weights as written here") != std::string::npos, card.c_str());
        QVERIFY(card.find(written.written.check->description) != std::string::npos);
        // From memory, with the workbench's check of the conversion: quoted, and said to be measured before writing.
        const ConversionOutcome inMemory = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        const CheckOutcome measured = pipeline::check(m_demo, *inMemory.converted, check, ExecutionContext());
        request.folder = dir / "from-memory";
        exportConversion(m_demo, inMemory, request, measured, ExecutionContext());
        card = fileText(request.folder / "README.md");
        QVERIFY2(card.find("on the converted model before it was written") != std::string::npos, card.c_str());
    }

    void everyEntryPointValidatesAndGuardsItsOutput()
    {
        // Issue 17's safety is the pipeline's, so the workbench's conversion and export get it as well as the CLI:
        // bad settings fail before any backend work, and no export or session lands on an input or a foreign folder.
        const fs::path dir = test::scratchDir("pipeline_safety");
        auto recording = std::make_shared<test::RecordingBackend>();
        Settings bad = quick(RopeStrategy::High);
        bad.conversion.latentDim = 100000;
        std::string e = errorOf([&] { convertInMemory(m_demo, nullptr, bad, ExecutionContext(recording)); });
        QVERIFY2(e.find("--latent-dim 100000 is outside the allowed range") != std::string::npos, e.c_str());
        ExportRequest request;
        request.folder = dir / "never";
        e = errorOf([&] { convertToFolder(m_demo, nullptr, bad, request, std::nullopt, ExecutionContext(recording)); });
        QVERIFY2(e.find("--latent-dim") != std::string::npos, e.c_str());
        QCOMPARE(recording->calls(), std::int64_t(0));
        QVERIFY(!fs::exists(request.folder));

        // A folder holding someone else's file is refused, even with force, before any work; nothing in it changes.
        Settings s = quick(RopeStrategy::High);
        s.conversion.latentDim = 16;
        request.folder = dir / "theirs";
        fs::create_directories(request.folder);
        test::writeTextFile(request.folder / "notes.txt", "mine");
        const ConversionOutcome inMemory = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        const std::int64_t before = recording->calls();
        for (const bool force : {false, true}) {
            request.output.force = force;
            e = errorOf([&] { convertToFolder(m_demo, nullptr, s, request, std::nullopt, ExecutionContext(recording)); });
            QVERIFY2(e.find(request.folder.string()) != std::string::npos, e.c_str());
            QVERIFY(!errorOf([&] { exportConversion(m_demo, inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        }
        QCOMPARE(recording->calls(), before);
        QCOMPARE(fileText(request.folder / "notes.txt"), std::string("mine"));

        // An earlier export of this tool is replaced only with force (the CLI's --force, the workbench's question).
        request.folder = dir / "ours";
        request.output.force = false;
        exportConversion(m_demo, inMemory, request, std::nullopt, ExecutionContext());
        QVERIFY(!errorOf([&] { exportConversion(m_demo, inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        request.output.force = true;
        QVERIFY(errorOf([&] { exportConversion(m_demo, inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        QVERIFY(fs::exists(request.folder / "README.md"));

        // Never over an input: the opened model's own file, nor its tokenizer, not even with force.
        fs::copy_file(test::demoDir() / "stories260K.bin", dir / "stories260K.bin");
        fs::copy_file(test::demoDir() / "tok512.bin", dir / "tok512.bin");
        const pipeline::OpenedModel copy = openModel({dir / "stories260K.bin", dir / "tok512.bin", true}, ExecutionContext());
        const std::string weights = fileText(dir / "stories260K.bin");
        for (const fs::path& input : {dir / "stories260K.bin", dir / "tok512.bin"}) {
            request.folder = input;
            QVERIFY(!errorOf([&] { convertToFolder(copy, nullptr, s, request, std::nullopt, ExecutionContext()); }).empty());
            QVERIFY(!errorOf([&] { exportConversion(copy, inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        }
        QVERIFY(fileText(dir / "stories260K.bin") == weights);

        // A session replaces a session file, any other file only with force, and never the model.
        const AnalysisPtr a = analyse(copy, quick(RopeStrategy::High), ExecutionContext());
        const SessionContent content{a, s, std::nullopt, copy.model->parameterCount()};
        test::writeTextFile(dir / "plain.txt", "not a session");
        QVERIFY(!errorOf([&] { saveSession(content, copy.model.get(), dir / "plain.txt", ExecutionContext()); }).empty());
        QCOMPARE(fileText(dir / "plain.txt"), std::string("not a session"));
        OutputOptions force;
        force.force = true;
        saveSession(content, copy.model.get(), dir / "plain.txt", ExecutionContext(), force);
        QVERIFY(isHdf5File(dir / "plain.txt"));
        saveSession(content, copy.model.get(), dir / "plain.txt", ExecutionContext()); // a session file: replaced
        QVERIFY(!errorOf([&] { saveSession(content, copy.model.get(), dir / "stories260K.bin", ExecutionContext(), force); }).empty());
        QVERIFY(fileText(dir / "stories260K.bin") == weights);
    }

    void allocationHonoursLocksAndFixedPairs()
    {
        const AnalysisPtr a = analyse(m_demo, quick(RopeStrategy::RotationLoss), ExecutionContext());
        const ModelConfig& c = m_demo.model->config;
        Settings s = defaultsFor(quick(RopeStrategy::RotationLoss), c);
        s.conversion.allocate = true;
        s.conversion.activationAware = true;
        const Allocation free = allocate(*m_demo.model, *a, s, ExecutionContext());
        QCOMPARE(free.latent.size(), std::size_t(c.layers));
        QVERIFY(free.elements <= allocationBudget(s, c));
        // A locked layer keeps its width and pairs.
        Settings locked = withLayerLatent(s, c, 1, 7);
        const Allocation withLock = allocate(*m_demo.model, *a, locked, ExecutionContext());
        QCOMPARE(withLock.latent[1], std::int64_t(7));
        QCOMPARE(withLock.pairs[1], ropePairsForLayer(c, locked.conversion, 1));
        // A pair count the user chose is kept in every layer.
        Settings fixed = s;
        fixed.conversion.ropePairs = 1;
        const Allocation fixedPairs = allocate(*m_demo.model, *a, fixed, ExecutionContext());
        QCOMPARE(fixedPairs.pairs, std::vector<std::int64_t>(static_cast<std::size_t>(c.layers), 1));
        // A conversion with the allocation pending runs it first, with the same result.
        const ConversionOutcome converted = convertInMemory(m_demo, a, s, ExecutionContext());
        QVERIFY(converted.allocation);
        QCOMPARE(converted.allocation->latent, free.latent);
        QCOMPARE(converted.allocationBudget, allocationBudget(s, c));
        QCOMPARE(converted.plan.settings.latentPerLayer, free.latent);
        QCOMPARE(converted.plan.settings.ropePairsPerLayer, free.pairs);
        QVERIFY(converted.requested == s);
        // Widths already in the settings (an allocation applied, or set by hand) are converted as they are.
        const ConversionOutcome applied = convertInMemory(m_demo, a, withAllocation(locked, withLock), ExecutionContext());
        QVERIFY(!applied.allocation);
        QCOMPARE(applied.plan.settings.latentPerLayer, withLock.latent);
    }

    void conversionCalibratesWhenNeeded()
    {
        // Without an analysis, settings that need one are calibrated for (the CLI's convert); the analysis used is
        // part of the outcome, and one made from another model is refused.
        Settings s = quick(RopeStrategy::TwoNorm);
        s.conversion.latentDim = 16;
        const ConversionOutcome converted = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        QVERIFY(converted.analysis);
        QVERIFY(converted.analysis->calibrationTokens > 0 && converted.analysis->calibrationTokens <= 64);
        const pipeline::OpenedModel other = openModel({test::realModelPath("aidreams260K"), std::nullopt, false}, ExecutionContext());
        const AnalysisPtr foreign = analyse(other, quick(), ExecutionContext());
        QVERIFY(!errorOf([&] { convertInMemory(m_demo, foreign, s, ExecutionContext()); }).empty());
    }

    void bestConversionIsTheSameWithOrWithoutAnEarlierAnalysis()
    {
        // The best preset converts the same model whether it calibrates itself (its calibration pass keeps the
        // original's layer inputs) or is given an analysis of the same calibration made earlier (the allocation then
        // keeps the inputs it computes): the passes read the same numbers either way.
        Settings s = quick(RopeStrategy::RotationLoss);
        applyPreset("best", s.conversion);
        s.conversion.targetSaving = 0.75;
        const ConversionOutcome fresh = convertInMemory(m_demo, nullptr, s, ExecutionContext());
        QVERIFY(fresh.analysis && fresh.allocation);
        const ConversionOutcome later = convertInMemory(m_demo, fresh.analysis, s, ExecutionContext());
        QVERIFY(later.allocation);
        QCOMPARE(later.allocation->latent, fresh.allocation->latent);
        QCOMPARE(later.allocation->pairs, fresh.allocation->pairs);
        QCOMPARE(later.fits.size(), fresh.fits.size());
        for (std::size_t l = 0; l < fresh.fits.size(); ++l) {
            QCOMPARE(later.fits[l].outputErrorFinal, fresh.fits[l].outputErrorFinal);
            const MatrixRM a = fresh.converted->layers[l].o.toMatrix(), b = later.converted->layers[l].o.toMatrix();
            QVERIFY((a.array() == b.array()).all());
        }
    }

    void bestConversionIsTheSameWhateverTheThreads()
    {
        // A conversion gives the same bits on one core or several: products whose depth Eigen would block by the
        // thread count are cut into fixed slices, and the symmetric products of the decompositions add fixed partial
        // sums. Sequences of 400 tokens make the least-squares and covariance products (summed per sequence) deeper
        // than one slice.
        Settings s = quick(RopeStrategy::RotationLoss);
        s.calibration.samples = 4;
        s.calibration.sequenceLength = 400;
        applyPreset("best", s.conversion);
        s.conversion.targetSaving = 0.75;
        const int threads = omp_get_max_threads();
        std::vector<ConversionOutcome> outcomes;
        for (const int t : {1, 2, 3}) {
            omp_set_num_threads(t);
            outcomes.push_back(convertInMemory(m_demo, nullptr, s, ExecutionContext()));
        }
        omp_set_num_threads(threads);
        const Model& first = *outcomes.front().converted;
        for (std::size_t i = 1; i < outcomes.size(); ++i) {
            const Model& other = *outcomes[i].converted;
            QCOMPARE(other.layers.size(), first.layers.size());
            for (std::size_t l = 0; l < first.layers.size(); ++l) {
                const LayerWeights& a = first.layers[l];
                const LayerWeights& b = other.layers[l];
                for (const auto& [name, x, y] : {std::tuple{"o", &a.o, &b.o}, std::tuple{"q", &a.q, &b.q},
                                                 std::tuple{"down_kv", &a.downKv, &b.downKv}, std::tuple{"up_k", &a.upK, &b.upK},
                                                 std::tuple{"up_v", &a.upV, &b.upV}}) {
                    QCOMPARE(x->shape(), y->shape());
                    QVERIFY2(x->empty() || (x->toMatrix().array() == y->toMatrix().array()).all(),
                             qPrintable(QString("layer %1 %2 differs with %3 threads").arg(l).arg(name).arg(i + 1)));
                }
            }
        }
    }

    void evaluationActions()
    {
        const fs::path dir = test::scratchDir("pipeline_eval");
        test::writeTextFile(dir / "ids.txt", "1 403 407 261 378\n1 600\n");
        std::string e = errorOf([&] { evaluationIds(m_demo, dir / "ids.txt"); });
        QVERIFY2(e.find("sequence 2 holds id 600, outside the model's vocabulary of 512 ids") != std::string::npos, e.c_str());
        test::writeTextFile(dir / "ids.txt", "1 403 407 261 378\n");
        const TokenSequences ids = evaluationIds(m_demo, dir / "ids.txt");
        const EvaluationOutcome alone = evaluate(m_demo, ids, nullptr, ExecutionContext());
        QCOMPARE(alone.perplexity.tokens, std::int64_t(4));
        const EvaluationOutcome self = evaluate(m_demo, ids, &m_demo, ExecutionContext());
        QVERIFY(self.comparison);
        QCOMPARE(self.comparison->kl, 0.0);
        QCOMPARE(self.comparison->top1Agreement, 1.0);
        test::writeTextFile(dir / "story.txt", "Once upon a time, there was a little girl named Lily.");
        const TokenSequences text = evaluationText(m_demo, dir / "story.txt", 8);
        QVERIFY(text.size() >= 2);
        for (const auto& seq : text)
            QCOMPARE(seq.front(), 1); // BOS first
    }

    void sessionsRoundTripTheWholeSettings()
    {
        const fs::path dir = test::scratchDir("pipeline_sessions");
        const AnalysisPtr a = analyse(m_demo, quick(), ExecutionContext());
        const ModelConfig& c = m_demo.model->config;
        Settings s = withLayerLatent(withGlobalLatent(defaultsFor(quick(), c), c, 20), c, 3, 9);
        s.calibration.source = CalibrationOptions::Source::Text;
        s.calibration.file = "/tmp/some text.txt";
        s.calibration.seed = 11;
        saveSession({a, s, std::nullopt, m_demo.model->parameterCount()}, m_demo.model.get(), dir / "s.h5", ExecutionContext());
        Session opened = openSession(dir / "s.h5", ExecutionContext());
        QCOMPARE(opened.schemaVersion, kSessionSchemaVersion);
        QVERIFY(opened.settings == s);
        QVERIFY(sessionModelWarning(opened, test::demoDir() / "stories260K.bin", ExecutionContext()).empty());
        QVERIFY(!sessionModelWarning(opened, test::realModelPath("aidreams260K"), ExecutionContext()).empty());
        const SessionContent content = sessionContent(std::move(opened));
        QVERIFY(content.calibrationStored);
        QVERIFY(sessionMatchesModel(content, *m_demo.model));
        QCOMPARE(content.analysis->layers.size(), a->layers.size());
    }

    void sessionsOfSchemaOneStillOpen()
    {
        // Written by the tools of schema 1: the CLI's analyze --session (the fuzzing seed) and the workbench, which
        // kept a layer's hand-set width without its lock.
        const Session cli = openSession(test::sourceDir() / "fuzz" / "seeds" / "session" / "demo-short-calibration.h5", ExecutionContext());
        QCOMPARE(cli.schemaVersion, 1);
        QVERIFY(!cli.analysis.layers.empty());
        QVERIFY(cli.settings.lockedLayers.empty());
        QVERIFY(cli.settings.calibration == CalibrationOptions());
        const Session gui = openSession(test::sourceDir() / "data" / "sessions" / "schema1-workbench-locked-widths.h5", ExecutionContext());
        QCOMPARE(gui.schemaVersion, 1);
        QCOMPARE(gui.settings.conversion.latentPerLayer, (std::vector<std::int64_t>{40, 40, 10, 40, 40, 40}));
        QCOMPARE(gui.settings.lockedLayers, (std::vector<bool>{false, false, true, false, false, false}));
        QVERIFY(!sessionContent(Session(gui)).calibrationStored);
    }
};

QTEST_MAIN(TestPipeline)
#include "tst_pipeline.moc"
