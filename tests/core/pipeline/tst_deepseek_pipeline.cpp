// The deepseek-v3 target through the pipeline (issue 15): the CLI's streaming conversion and the workbench's
// convert-then-export write the same folder; that folder, reloaded, gives the in-memory converted model's logits bit
// for bit; bad settings and bad destinations are refused before any work, by the same output policy as every export;
// and the latent RMSNorm the stock engines always apply is harmless (the export does not depend on its eps, which
// transformers sets to 1e-6 and vLLM / SGLang to rms_norm_eps) and earns its place (the fit through the norm is at
// least as good as dropping it would be).
#include "common/model_fixtures.h"
#include "common/recording_backend.h"
#include "common/test_support.h"
#include "model/model_loader.h"
#include "pipeline/convert.h"
#include "pipeline/open_model.h"
#include "util/error.h"

#include <QtTest>

#include <algorithm>
#include <fstream>

using namespace mla;
using namespace mla::pipeline;
namespace fs = std::filesystem;

namespace {

Settings deepSeek()
{
    Settings s;
    s.conversion.target = ConversionTarget::DeepSeekV3;
    s.calibration.samples = 2;
    s.calibration.sequenceLength = 32;
    return s;
}

std::string deepseekFileText(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string deepseekErrorOf(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

double relative(const MatrixRM& a, const MatrixRM& b)
{
    return test::relativeNormDifference(a.data(), b.data(), static_cast<std::size_t>(b.size()));
}

} // namespace

class TestDeepSeekPipeline : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase()
    {
        m_demo = openModel({test::demoDir() / "stories260K.bin", std::nullopt, true}, ExecutionContext());
        m_inMemory = convertInMemory(m_demo, nullptr, deepSeek(), ExecutionContext());
        QVERIFY(m_inMemory.deepSeek);
        QVERIFY(m_inMemory.converted);
    }

    void streamingAndInMemoryWriteTheSameFolderThatReloadsBitForBit()
    {
        const fs::path dir = test::scratchDir("deepseek_pipeline_folders");
        ExportRequest cli;
        cli.folder = dir / "streamed";
        const FolderOutcome streamed = convertToFolder(m_demo, nullptr, deepSeek(), cli, std::nullopt, ExecutionContext());
        QVERIFY(streamed.conversion.deepSeek);
        QCOMPARE(streamed.conversion.plan.converted.architecture, std::string("deepseek_v3"));
        ExportRequest gui;
        gui.folder = dir / "from-memory";
        exportConversion(m_demo, m_inMemory, gui, std::nullopt, ExecutionContext());
        std::vector<std::string> names;
        for (const auto& entry : fs::recursive_directory_iterator(cli.folder))
            if (entry.is_regular_file())
                names.push_back(entry.path().lexically_relative(cli.folder).generic_string());
        for (const char* needed : {"README.md", "config.json", "model.safetensors"})
            QVERIFY2(std::find(names.begin(), names.end(), needed) != names.end(), needed);
        // No MHA2MLA modeling code: stock engines load this layout by model_type.
        QVERIFY(std::find(names.begin(), names.end(), "modeling_mla.py") == names.end());
        for (const std::string& name : names)
            QVERIFY2(deepseekFileText(cli.folder / name) == deepseekFileText(gui.folder / name), name.c_str());

        // Our engine on the folder gives the in-memory converted model's logits exactly (float32 weights as written).
        const Model reloaded = loadModel(gui.folder);
        QVERIFY(reloaded.config.deepseek == m_inMemory.converted->config.deepseek);
        const Transformer inMemory(*m_inMemory.converted), fromDisk(reloaded), expanded(reloaded, MlaForm::Expanded);
        const auto ids = test::sampleSequences(Transformer(*m_demo.model), 1, 40, 7)[0];
        const MatrixRM a = test::sequenceLogits(inMemory, ids), b = test::sequenceLogits(fromDisk, ids);
        QCOMPARE(test::maxAbsoluteDifference(a.data(), b.data(), static_cast<std::size_t>(a.size())), 0.0);
        QVERIFY(relative(test::sequenceLogits(expanded, ids), b) < 1e-5); // absorbed (cached latent) = expanded
    }

    void badSettingsAndDestinationsAreRefusedBeforeWork()
    {
        const fs::path dir = test::scratchDir("deepseek_pipeline_safety");
        auto recording = std::make_shared<test::RecordingBackend>();
        ExportRequest request;
        request.folder = dir / "never";
        Settings flash = deepSeek();
        flash.conversion.flashMla = true; // 512 + 64 on a 5-layer model of 320 cached values per token
        std::string e = deepseekErrorOf([&] { convertToFolder(m_demo, nullptr, flash, request, std::nullopt, ExecutionContext(recording)); });
        QVERIFY2(e.find("too small for FlashMLA") != std::string::npos, e.c_str());
        Settings split = deepSeek();
        split.conversion.method = LatentMethod::Split;
        e = deepseekErrorOf([&] { convertInMemory(m_demo, nullptr, split, ExecutionContext(recording)); });
        QVERIFY2(e.find("joint") != std::string::npos, e.c_str());
        Settings perLayer = deepSeek();
        perLayer.conversion.latentPerLayer.assign(5, 8);
        e = deepseekErrorOf([&] { convertInMemory(m_demo, nullptr, perLayer, ExecutionContext(recording)); });
        QVERIFY2(e.find("every layer") != std::string::npos, e.c_str());
        QCOMPARE(recording->calls(), std::int64_t(0));
        QVERIFY(!fs::exists(request.folder));

        // Someone else's folder: refused with or without force, before any work, and left as it was.
        request.folder = dir / "theirs";
        fs::create_directories(request.folder);
        test::writeTextFile(request.folder / "notes.txt", "mine");
        for (const bool force : {false, true}) {
            request.output.force = force;
            e = deepseekErrorOf([&] { convertToFolder(m_demo, nullptr, deepSeek(), request, std::nullopt, ExecutionContext(recording)); });
            QVERIFY2(e.find(request.folder.string()) != std::string::npos, e.c_str());
            QVERIFY(!deepseekErrorOf([&] { exportConversion(m_demo, m_inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        }
        QCOMPARE(recording->calls(), std::int64_t(0));
        QCOMPARE(deepseekFileText(request.folder / "notes.txt"), std::string("mine"));

        // An earlier export of ours is replaced only when forced.
        request.folder = dir / "ours";
        request.output.force = false;
        exportConversion(m_demo, m_inMemory, request, std::nullopt, ExecutionContext());
        QVERIFY(!deepseekErrorOf([&] { exportConversion(m_demo, m_inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        request.output.force = true;
        QVERIFY(deepseekErrorOf([&] { exportConversion(m_demo, m_inMemory, request, std::nullopt, ExecutionContext()); }).empty());
        QVERIFY(fs::exists(request.folder / "config.json"));
    }

    void latentNormIsHarmlessAndEarnsItsPlace()
    {
        // Harmless: the export scales the latent to an RMS near 1 per token, so the eps each engine adds (transformers
        // 1e-6, vLLM and SGLang rms_norm_eps, here 1e-5) changes nothing that matters.
        Model otherEps = *m_inMemory.converted;
        QCOMPARE(otherEps.config.deepseek->latentNormEps, 1e-6);
        otherEps.config.deepseek->latentNormEps = 1e-5;
        const auto ids = test::sampleSequences(Transformer(*m_demo.model), 1, 40, 9)[0];
        const MatrixRM a = test::sequenceLogits(Transformer(*m_inMemory.converted), ids);
        const MatrixRM b = test::sequenceLogits(Transformer(otherEps), ids);
        const double eps = relative(b, a);
        QVERIFY2(eps < 1e-4, std::to_string(eps).c_str());
        // And it is not a no-op: the weights are fitted to the normalised latent, so an engine that skipped the norm
        // (or an export that assumed it away, as TransMLA's deepseek-style exports do) would compute something else.
        Model withoutNorm = *m_inMemory.converted;
        withoutNorm.config.deepseek->latentNorm = false;
        const double skipped = relative(test::sequenceLogits(Transformer(withoutNorm), ids), a);
        QVERIFY2(skipped > 1e-2, std::to_string(skipped).c_str());
        // Earns its place: every layer's latent fitted through the norm reproduces the position-free keys and values at
        // least as well as the plain rescaling does, and the whole fit is a real approximation (0 < residual < 1).
        for (const auto& r : m_inMemory.deepSeek->layers) {
            QVERIFY(r.latentResidualNormFitted <= r.latentResidualNormScaled + 1e-9);
            QVERIFY(r.latentResidualNormFitted > 0.0 && r.latentResidualNormFitted < 1.0);
        }
    }

private:
    pipeline::OpenedModel m_demo;
    ConversionOutcome m_inMemory;
};

QTEST_GUILESS_MAIN(TestDeepSeekPipeline)
#include "tst_deepseek_pipeline.moc"
