// CPU vs CUDA parity of everything the CUDA backend computes (docs/cuda-backend.md states the tolerances):
//   scores        calibration statistics, RoPE scores and selections, input covariances, weight and activation spectra
//                 of a full analysis on real checkpoints
//   factors       Gram matrices, eigenvalues, low-rank factors, products and reconstruction errors on random matrices
//                 of several shapes, and convertAttention (joint, split, whitened) on real layers
//   forward       the layer-by-layer calibration forward (hidden states after every layer), with the weights resident
//                 and streamed
//   generate      greedy generation (ids equal) and perplexity of real models, original and converted to MLA
//   architectures logits of tiny random llama3-scaled / sliding-window / biased / q-k-normed models, F32 and BF16
// Plain executable (no Qt, so it runs on a GPU machine without Qt): exit 0 on success, 1 on a failure, 77 (CTest's
// skip) with the reason on stderr when no CUDA device is usable.
#include "analysis/analyzer.h"
#include "analysis/calibration.h"
#include "analysis/key_value_split.h"
#include "backend/compute_backend.h"
#include "conversion/converter.h"
#include "conversion/layer_converter.h"
#include "engine/evaluation.h"
#include "engine/generator.h"
#include "model/model_loader.h"
#include "util/error.h"

#include "../../tools/hf_parity_shapes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <string>

namespace fs = std::filesystem;
using namespace mla;

namespace {

int g_failures = 0;
int g_checks = 0;

void expect(bool ok, const std::string& what)
{
    ++g_checks;
    if (!ok) {
        ++g_failures;
        std::printf("FAIL  %s\n", what.c_str());
    }
}

// Reports and checks a measured difference against its tolerance.
void within(double value, double tolerance, const std::string& what)
{
    std::printf("%-72s %.3e (tolerance %.0e)\n", what.c_str(), value, tolerance);
    expect(std::isfinite(value) && value <= tolerance, what);
}

template <typename A, typename B>
double relativeFrobenius(const A& a, const B& b)
{
    const double n = b.template cast<double>().norm();
    return (a.template cast<double>() - b.template cast<double>()).norm() / std::max(n, 1e-300);
}

// max_i |a_i - b_i| / max_i |b_i|
template <typename A, typename B>
double relativeMax(const A& a, const B& b)
{
    const double scale = b.template cast<double>().cwiseAbs().maxCoeff();
    return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff() / std::max(scale, 1e-300);
}

double spectrumDifference(const std::vector<double>& a, const std::vector<double>& b, std::size_t top)
{
    if (a.size() != b.size())
        return INFINITY;
    double worst = 0.0;
    for (std::size_t i = 0; i < std::min(top, a.size()); ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-300));
    return worst;
}

// Largest difference of any singular value relative to the largest one.
double spectrumAbsolute(const std::vector<double>& a, const std::vector<double>& b)
{
    if (a.size() != b.size())
        return INFINITY;
    if (a.empty())
        return 0.0;
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst / std::max(b[0], 1e-300);
}

fs::path modelsDir() { return MLA_TEST_MODELS_DIR; }
fs::path demoModel() { return fs::path(MLA_DEMO_DIR) / "stories260K.bin"; }

fs::path scratchDir()
{
    const char* env = std::getenv("MLA_TEST_TMP");
    fs::path p = env ? fs::path(env) : fs::temp_directory_path() / "mla_cuda_parity";
    fs::create_directories(p);
    return p;
}

std::shared_ptr<const ComputeBackend> g_cuda;

// Runs `f(backend)` on the CPU or on the GPU: every core step takes the backend it computes on.
template <typename F>
auto onCpu(F f)
{
    return f(cpuBackend());
}
template <typename F>
auto onGpu(F f)
{
    return f(*g_cuda);
}

struct RealModel {
    std::string name;
    fs::path path;
};

std::vector<RealModel> realModels()
{
    return {{"stories260K-hf (GQA 8:4)", modelsDir() / "stories260K-hf"},
            {"aidreams260K-hf (MHA)", modelsDir() / "aidreams260K-hf"},
            {"xs260K (GQA)", modelsDir() / "xs260K" / "xs260K.bin"},
            {"poem5L (MHA)", modelsDir() / "poem5L" / "poem_model.bin"}};
}

CalibrationSet sampledCalibration(const Model& model, int samples, int length, std::uint64_t seed = 3)
{
    return onCpu([&](const ComputeBackend& backend) {
        const Transformer t(model, MlaForm::Expanded);
        CalibrationOptions o;
        o.samples = samples;
        o.sequenceLength = length;
        o.seed = seed;
        return prepareCalibration(backend, t, nullptr, o);
    });
}

// ---------------------------------------------------------------------------------------------------------------------

void scoresCase()
{
    for (const auto& rm : realModels()) {
        const Model model = loadModel(rm.path);
        const CalibrationSet calibration = sampledCalibration(model, 8, 96);
        AnalysisOptions options;
        options.keepCovarianceUpToHidden = 1 << 20;
        const AnalysisResult cpu = onCpu([&](const ComputeBackend& backend) { return analyzeModel(backend, model, calibration, "samples", options); });
        const AnalysisResult gpu = onGpu([&](const ComputeBackend& backend) { return analyzeModel(backend, model, calibration, "samples", options); });
        double qn = 0, kn = 0, score = 0, rot = 0, cov = 0, wspec = 0, wspecAll = 0, aspec = 0;
        int selectionDiffers = 0;
        for (std::size_t l = 0; l < cpu.layers.size(); ++l) {
            const auto& a = gpu.layers[l];
            const auto& b = cpu.layers[l];
            qn = std::max(qn, relativeMax(a.scores.queryNorm, b.scores.queryNorm));
            kn = std::max(kn, relativeMax(a.scores.keyNorm, b.scores.keyNorm));
            score = std::max(score, relativeMax(a.scores.perKvHead, b.scores.perKvHead));
            rot = std::max(rot, relativeMax(a.scores.rotationLoss, b.scores.rotationLoss));
            cov = std::max(cov, relativeFrobenius(a.inputCovariance, b.inputCovariance));
            selectionDiffers += a.selection == b.selection ? 0 : 1;
            for (auto [x, y] : {std::pair{&a.weightSpectra.joint, &b.weightSpectra.joint}, {&a.weightSpectra.key, &b.weightSpectra.key},
                                {&a.weightSpectra.value, &b.weightSpectra.value}}) {
                wspec = std::max(wspec, spectrumDifference(*x, *y, 8));
                wspecAll = std::max(wspecAll, spectrumAbsolute(*x, *y));
            }
            for (auto [x, y] : {std::pair{&a.activationSpectra.joint, &b.activationSpectra.joint},
                                {&a.activationSpectra.key, &b.activationSpectra.key}, {&a.activationSpectra.value, &b.activationSpectra.value}})
                aspec = std::max(aspec, spectrumDifference(*x, *y, 8));
        }
        std::printf("-- %s, %lld calibration tokens\n", rm.name.c_str(), static_cast<long long>(calibration.tokens()));
        within(qn, 1e-4, "query pair norms, max relative difference");
        within(kn, 1e-4, "key pair norms, max relative difference");
        within(score, 2e-4, "2-norm scores per KV head, max relative difference");
        within(rot, 5e-4, "rotation-loss scores, max relative difference");
        within(cov, 1e-5, "input covariance, relative Frobenius difference");
        within(wspec, 1e-9, "weight spectra, top 8 values, max relative difference");
        within(wspecAll, 1e-12, "weight spectra, all values, max difference / s_max");
        within(aspec, 1e-4, "activation spectra, top 8 values, max relative difference");
        expect(selectionDiffers == 0, rm.name + ": kept pairs identical in every layer");
        std::printf("%-72s %d\n", "layers whose kept pairs differ", selectionDiffers);
    }
}

// ---------------------------------------------------------------------------------------------------------------------

MatrixRM randomMatrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::int64_t rank = -1)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](MatrixRM& m) {
        for (Eigen::Index i = 0; i < m.size(); ++i)
            m.data()[i] = normal(rng);
    };
    if (rank < 0) {
        MatrixRM m(rows, cols);
        fill(m);
        // A decaying spectrum like real projections.
        for (std::int64_t c = 0; c < cols; ++c)
            m.col(c) *= static_cast<float>(std::exp(-3.0 * static_cast<double>(c) / static_cast<double>(cols)));
        return m;
    }
    MatrixRM a(rows, rank), b(rank, cols);
    fill(a);
    fill(b);
    return a * b;
}

void factorsCase()
{
    struct Shape {
        std::int64_t rows, cols, k, rank;
    };
    for (const Shape& s : {Shape{300, 200, 64, -1}, Shape{150, 420, 40, -1}, Shape{256, 256, 256, -1}, Shape{200, 120, 60, 30},
                           Shape{96, 64, 80, -1}, Shape{1536, 576, 192, -1}}) {
        const MatrixRM m = randomMatrix(s.rows, s.cols, static_cast<std::uint64_t>(s.rows * 7 + s.cols), s.rank);
        const std::string tag = std::to_string(s.rows) + "x" + std::to_string(s.cols) + " k=" + std::to_string(s.k)
                                + (s.rank >= 0 ? " rank " + std::to_string(s.rank) : "");
        const LowRankFactors c = onCpu([&](const ComputeBackend& backend) { return backend.lowRankFactors(m, s.k); });
        const LowRankFactors g = onGpu([&](const ComputeBackend& backend) { return backend.lowRankFactors(m, s.k); });
        const MatrixRM pc = c.up * c.down, pg = g.up * g.down;
        std::printf("-- low-rank factors %s\n", tag.c_str());
        within(spectrumDifference(g.singular, c.singular, 8), 1e-9, "singular values, top 8, max relative difference");
        within((pg - pc).cast<double>().norm() / m.cast<double>().norm(), 2e-6, "||P_gpu - P_cpu||_F / ||M||_F (P = up down)");
        within(std::abs(g.residual - c.residual) / m.cast<double>().norm(), 1e-7, "|residual_gpu - residual_cpu| / ||M||_F");
        within(std::abs(g.optimalResidual - c.optimalResidual) / m.cast<double>().norm(), 1e-7, "|optimal residual difference| / ||M||_F");
        const MatrixRM orth = g.down * g.down.transpose();
        const std::int64_t effective = std::min<std::int64_t>(s.k, std::min(s.rows, s.cols));
        const std::int64_t useful = s.rank >= 0 ? std::min(effective, s.rank) : effective;
        within((orth.topLeftCorner(useful, useful) - MatrixRM::Identity(useful, useful)).cwiseAbs().maxCoeff(), 1e-5,
               "GPU down rows orthonormal, max |D D^T - I|");
        const std::vector<double> sc = onCpu([&](const ComputeBackend& backend) { return backend.singularValues(m); });
        const std::vector<double> sg = onGpu([&](const ComputeBackend& backend) { return backend.singularValues(m); });
        // Singular values come from the Gram matrix's eigenvalues, whose absolute error is about eps * s_max^2: a value
        // near zero (past a rank-deficient matrix's rank) is only known to sqrt(eps) * s_max ~ 1.5e-8 * s_max on
        // either device, so there the bound is that floor; a full-rank spectrum must agree to 1e-12.
        within(spectrumAbsolute(sg, sc), s.rank >= 0 ? 5e-8 : 1e-12, "singularValues: max difference / s_max");
        for (GramSide side : {GramSide::Columns, GramSide::Rows}) {
            const Eigen::MatrixXd gc = onCpu([&](const ComputeBackend& backend) { return backend.gram(m, side); });
            const Eigen::MatrixXd gg = onGpu([&](const ComputeBackend& backend) { return backend.gram(m, side); });
            within(relativeFrobenius(gg, gc), 1e-14, side == GramSide::Columns ? "gram M^T M relative difference" : "gram M M^T relative difference");
        }
        const Eigen::MatrixXd sym = onCpu([&](const ComputeBackend& backend) { return backend.gram(m, GramSide::Columns); });
        const Eigen::VectorXd ec = onCpu([&](const ComputeBackend& backend) { return backend.symmetricEigenvalues(sym); });
        const Eigen::VectorXd eg = onGpu([&](const ComputeBackend& backend) { return backend.symmetricEigenvalues(sym); });
        // Backward-stable symmetric eigensolvers agree to about n * eps * |lambda_max| (n = 576 here at most: 1.3e-13).
        const double eigenBound = std::max(1e-13, 4.0 * static_cast<double>(sym.rows()) * 2.22e-16);
        within((eg - ec).cwiseAbs().maxCoeff() / ec.cwiseAbs().maxCoeff(), eigenBound, "symmetricEigenvalues: max difference / |lambda_max|");
        const MatrixXdRM right = randomMatrix(s.cols, 50, 5).cast<double>();
        const MatrixXdRM mc = onCpu([&](const ComputeBackend& backend) { return backend.multiply(m, right); });
        const MatrixXdRM mg = onGpu([&](const ComputeBackend& backend) { return backend.multiply(m, right); });
        within(relativeFrobenius(mg, mc), 1e-14, "multiply (double) relative difference");
        const double ec1 = onCpu([&](const ComputeBackend& backend) { return backend.reconstructionError(m, c.up, c.down); });
        const double eg1 = onGpu([&](const ComputeBackend& backend) { return backend.reconstructionError(m, c.up, c.down); });
        within(std::abs(eg1 - ec1) / std::max(ec1, 1e-300), 1e-10, "reconstructionError relative difference");
    }

    // convertAttention on real layers and on a SmolLM-shaped synthetic BF16 layer, for each latent method.
    std::vector<std::pair<std::string, fs::path>> models = {{"stories260K-hf", modelsDir() / "stories260K-hf"}};
    const fs::path smol = scratchDir() / "smollm-2layers";
    {
        SyntheticOptions o;
        o.layers = 2;
        o.dtype = DType::BF16;
        writeSyntheticCheckpoint(syntheticShape("smollm-135m"), o, smol);
        models.emplace_back("smollm-135m shape, 2 layers, BF16", smol);
    }
    for (const auto& [name, path] : models) {
        const Model model = loadModel(path);
        const ModelConfig& c = model.config;
        const CalibrationSet calibration = sampledCalibration(model, 2, 64);
        AnalysisOptions ao;
        ao.keepCovarianceUpToHidden = 1 << 20;
        ao.spectra = false;
        const AnalysisResult analysis = onCpu([&](const ComputeBackend& backend) { return analyzeModel(backend, model, calibration, "samples", ao); });
        for (LatentMethod method : {LatentMethod::Joint, LatentMethod::Split, LatentMethod::Key, LatentMethod::Value}) {
            for (bool whiten : {false, true}) {
                ConversionSettings settings;
                settings.strategy = RopeStrategy::High;
                settings.ropePairs = 1;
                settings.method = method;
                settings.activationAware = whiten;
                settings.balanceKeyValue = method == LatentMethod::Joint;
                // Key-only and value-only compression keep the other side whole, so they cannot reach the default 75%
                // saving on small heads: these cases use the half-way latent width instead.
                if (method == LatentMethod::Key || method == LatentMethod::Value)
                    settings.targetSaving = 0.25;
                const ConversionPlan plan = planConversion(c, settings, selectPairs(c, settings, nullptr));
                double worst = 0.0, errorDiff = 0.0;
                for (std::int64_t l = 0; l < c.layers; ++l) {
                    const auto& target = plan.converted.mla->layers[static_cast<std::size_t>(l)];
                    const MatrixXdRM* cov = &analysis.layers[static_cast<std::size_t>(l)].inputCovariance;
                    const ConvertedAttention a = onCpu([&](const ComputeBackend& backend) { return convertAttention(backend, c, model.layers[static_cast<std::size_t>(l)], target, settings, cov); });
                    const ConvertedAttention b = onGpu([&](const ComputeBackend& backend) { return convertAttention(backend, c, model.layers[static_cast<std::size_t>(l)], target, settings, cov); });
                    auto product = [](const MatrixRM& up, const MatrixRM& down) { return MatrixRM(up * down); };
                    if (a.downKv.size() > 0) {
                        worst = std::max(worst, relativeFrobenius(product(b.upK, b.downKv), product(a.upK, a.downKv)));
                        worst = std::max(worst, relativeFrobenius(product(b.upV, b.downKv), product(a.upV, a.downKv)));
                    }
                    if (a.downK.size() > 0 && a.upK.size() > 0)
                        worst = std::max(worst, relativeFrobenius(product(b.upK, b.downK), product(a.upK, a.downK)));
                    if (a.downV.size() > 0)
                        worst = std::max(worst, relativeFrobenius(product(b.upV, b.downV), product(a.upV, a.downV)));
                    worst = std::max(worst, relativeFrobenius(b.q, a.q));
                    errorDiff = std::max({errorDiff, std::abs(b.jointRelativeError - a.jointRelativeError),
                                          std::abs(b.keyRelativeError - a.keyRelativeError), std::abs(b.valueRelativeError - a.valueRelativeError)});
                }
                std::printf("-- convertAttention %s, %s%s\n", name.c_str(), std::string(latentMethodName(method)).c_str(), whiten ? ", whitened" : "");
                within(worst, 2e-5, "converted products up*down, max relative Frobenius difference");
                within(errorDiff, 1e-6, "reported relative errors, max absolute difference");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------

void forwardCase()
{
    std::vector<std::pair<std::string, fs::path>> models;
    for (const auto& rm : realModels())
        models.emplace_back(rm.name, rm.path);
    const fs::path smol = scratchDir() / "smollm-3layers-bf16";
    {
        SyntheticOptions o;
        o.layers = 3;
        o.dtype = DType::BF16;
        writeSyntheticCheckpoint(syntheticShape("smollm-135m"), o, smol);
        models.emplace_back("smollm-135m shape, 3 layers, BF16", smol);
    }
    for (const auto& [name, path] : models) {
        const Model model = loadModel(path);
        const CalibrationSet calibration = sampledCalibration(model, 5, 80);
        const Transformer t(model, MlaForm::Expanded);
        StatisticsOptions so;
        so.inputGram = true;
        auto run = [&](const ComputeBackend& b) {
            std::vector<std::vector<MatrixRM>> perLayer;
            std::vector<LayerStatistics> stats;
            auto runner = b.layerRunner(t, calibration.sequences);
            for (std::int64_t l = 0; l < model.config.layers; ++l) {
                LayerStatistics s = emptyStatistics(model.config, so);
                runner->runLayer(l, so, &s);
                stats.push_back(std::move(s));
                perLayer.push_back(runner->hiddenStates());
            }
            return std::make_pair(perLayer, stats);
        };
        const auto [hc, sc] = run(cpuBackend());
        const auto [hg, sg] = run(*g_cuda);
        double worst = 0.0, gram = 0.0, norms = 0.0;
        for (std::size_t l = 0; l < hc.size(); ++l) {
            for (std::size_t s = 0; s < hc[l].size(); ++s)
                worst = std::max(worst, relativeMax(hg[l][s], hc[l][s]));
            gram = std::max(gram, relativeFrobenius(sg[l].inputGram, sc[l].inputGram));
            norms = std::max({norms, relativeMax(sg[l].qPairNorm, sc[l].qPairNorm), relativeMax(sg[l].kPairMoment, sc[l].kPairMoment)});
            expect(sg[l].tokens == sc[l].tokens, name + ": token counts equal");
        }
        std::printf("-- calibration forward %s (%lld tokens, %lld layers)\n", name.c_str(), static_cast<long long>(calibration.tokens()),
                    static_cast<long long>(model.config.layers));
        within(worst, 1e-4, "hidden states after every layer, max |diff| / max |cpu|");
        within(norms, 1e-4, "pair norms and moments, max relative difference");
        within(gram, 1e-5, "input Gram, relative Frobenius difference");
    }

    // Weight streaming (the path of models larger than the GPU) gives the same results as resident weights.
    setenv("MLA_CUDA_STREAM_WEIGHTS", "1", 1);
    const Model streamed = loadModel(smol);
    unsetenv("MLA_CUDA_STREAM_WEIGHTS");
    const Model resident = loadModel(smol);
    const CalibrationSet calibration = sampledCalibration(resident, 3, 64);
    auto final = [&](const Model& m) {
        const Transformer t(m, MlaForm::Expanded);
        auto runner = g_cuda->layerRunner(t, calibration.sequences);
        for (std::int64_t l = 0; l < m.config.layers; ++l)
            runner->runLayer(l, {}, nullptr);
        return runner->hiddenStates();
    };
    setenv("MLA_CUDA_STREAM_WEIGHTS", "1", 1);
    const auto a = final(streamed);
    unsetenv("MLA_CUDA_STREAM_WEIGHTS");
    const auto b = final(resident);
    double diff = 0.0;
    for (std::size_t s = 0; s < a.size(); ++s)
        diff = std::max(diff, relativeMax(a[s], b[s]));
    std::printf("-- weights streamed layer by layer vs resident (smollm shape)\n");
    within(diff, 1e-6, "final hidden states, max |diff| / max |resident|");
}

// ---------------------------------------------------------------------------------------------------------------------

void generateCase()
{
    std::vector<std::pair<std::string, fs::path>> models = {{"stories260K (llama2.c .bin)", demoModel()},
                                                            {"stories260K-hf", modelsDir() / "stories260K-hf"},
                                                            {"aidreams260K-hf", modelsDir() / "aidreams260K-hf"}};
    for (const auto& [name, path] : models) {
        const Model model = loadModel(path);
        const Transformer t(model);
        GenerationOptions g;
        g.steps = 256;
        const std::vector<int> prompt = promptIds(model.config, nullptr, "");
        const GenerationResult c = onCpu([&](const ComputeBackend& backend) { return generate(backend, t, nullptr, prompt, g); });
        const GenerationResult r = onGpu([&](const ComputeBackend& backend) { return generate(backend, t, nullptr, prompt, g); });
        std::printf("-- greedy generation %s: %zu ids on the CPU, %zu on the GPU, %s\n", name.c_str(), c.ids.size(), r.ids.size(),
                    c.ids == r.ids ? "identical" : "DIFFERENT");
        expect(c.ids == r.ids, name + ": greedy generations equal");
        const CalibrationSet sequences = sampledCalibration(model, 4, 128, 11);
        const PerplexityResult pc = onCpu([&](const ComputeBackend& backend) { return perplexity(backend, t, sequences.sequences); });
        const PerplexityResult pg = onGpu([&](const ComputeBackend& backend) { return perplexity(backend, t, sequences.sequences); });
        within(std::abs(pg.nll - pc.nll) / pc.nll, 1e-5, "perplexity: relative difference of the summed NLL");
    }

    // A converted (MLA) model: the GPU runs the expanded-equivalent form, the CPU the absorbed one.
    const Model model = loadModel(modelsDir() / "stories260K-hf");
    ConversionSettings settings;
    settings.strategy = RopeStrategy::Uniform;
    settings.ropePairs = 1;
    settings.latentDim = 16;
    const ConversionPlan plan = planConversion(model.config, settings, selectPairs(model.config, settings, nullptr));
    const Model converted = onCpu([&](const ComputeBackend& backend) { return convertModel(backend, model, plan); });
    const Transformer t(converted, MlaForm::Absorbed);
    GenerationOptions g;
    g.steps = 200;
    const std::vector<int> prompt = promptIds(converted.config, nullptr, "");
    const GenerationResult c = onCpu([&](const ComputeBackend& backend) { return generate(backend, t, nullptr, prompt, g); });
    const GenerationResult r = onGpu([&](const ComputeBackend& backend) { return generate(backend, t, nullptr, prompt, g); });
    std::printf("-- greedy generation, stories260K converted to MLA (latent 16, 1 pair): %s\n", c.ids == r.ids ? "identical" : "DIFFERENT");
    expect(c.ids == r.ids, "converted model: greedy generations equal");
    const CalibrationSet sequences = sampledCalibration(model, 4, 128, 11);
    const PerplexityResult pc = onCpu([&](const ComputeBackend& backend) { return perplexity(backend, t, sequences.sequences); });
    const PerplexityResult pg = onGpu([&](const ComputeBackend& backend) { return perplexity(backend, t, sequences.sequences); });
    within(std::abs(pg.nll - pc.nll) / pc.nll, 1e-5, "converted model perplexity: relative difference of the summed NLL");
}

// ---------------------------------------------------------------------------------------------------------------------

void architecturesCase()
{
    for (const SyntheticShape& shape : test::tinyShapes()) {
        for (DType dtype : {DType::F32, DType::BF16}) {
            const fs::path folder = scratchDir() / (shape.name + (dtype == DType::F32 ? "-f32" : "-bf16"));
            test::writeTinyCheckpoint(shape, folder, dtype);
            const Model model = loadModel(folder);
            const Transformer t(model);
            const std::vector<int> ids = test::paritySequence();
            auto logits = [&](const ComputeBackend& backend) {
                auto session = backend.decoderSession(t, static_cast<std::int64_t>(ids.size()) + 8);
                MatrixRM all = session->forward(std::span<const int>(ids.data(), 40), Logits::All);
                // Then decode the rest token by token through the cache.
                MatrixRM rest(static_cast<Eigen::Index>(ids.size()) - 40, all.cols());
                for (std::size_t i = 40; i < ids.size(); ++i)
                    rest.row(static_cast<Eigen::Index>(i) - 40) = session->forward(std::span<const int>(&ids[i], 1), Logits::Last).row(0);
                MatrixRM out(static_cast<Eigen::Index>(ids.size()), all.cols());
                out << all, rest;
                return out;
            };
            const MatrixRM c = onCpu(logits);
            const MatrixRM g = onGpu(logits);
            std::printf("-- %s (%s), %s, %zu tokens (prefill 40 + decode)\n", shape.name.c_str(), shape.description.c_str(),
                        dtype == DType::F32 ? "F32" : "BF16", ids.size());
            within(relativeMax(g, c), 2e-5, "logits, max |diff| / max |cpu|");
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    const std::string which = argc > 1 ? argv[1] : "all";
    std::string why;
    g_cuda = cudaBackend(0, &why);
    // MLA_PARITY_SELF_CHECK=1 compares the CPU with itself: a check of this harness on a machine without a GPU.
    if (!g_cuda && std::getenv("MLA_PARITY_SELF_CHECK"))
        g_cuda = cpuBackendShared();
    if (!g_cuda) {
        std::fprintf(stderr, "SKIP: no usable CUDA backend: %s\n", why.c_str());
        return 77;
    }
    std::printf("CUDA device: %s; CPU: %s\n", g_cuda->device().label().c_str(), cpuBackend().device().label().c_str());
    const std::vector<std::pair<std::string, std::function<void()>>> cases = {
        {"scores", scoresCase}, {"factors", factorsCase}, {"forward", forwardCase}, {"generate", generateCase},
        {"architectures", architecturesCase}};
    bool ran = false;
    for (const auto& [name, f] : cases) {
        if (which != "all" && which != name)
            continue;
        ran = true;
        std::printf("=== %s\n", name.c_str());
        try {
            f();
        } catch (const std::exception& e) {
            ++g_failures;
            std::printf("FAIL  %s threw: %s\n", name.c_str(), e.what());
        }
    }
    if (!ran) {
        std::fprintf(stderr, "unknown case '%s'\n", which.c_str());
        return 2;
    }
    std::printf("%d checks, %d failed\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
