#include "pipeline/cost_estimate.h"

#include "analysis/original_trajectory.h"
#include "analysis/rope_selection.h"
#include "conversion/budget_allocation.h"
#include "conversion/presets.h"
#include "engine/transformer.h"
#include "pipeline/analyse.h"
#include "settings/settings_rules.h"
#include "util/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace mla::pipeline {
namespace {

double costSecondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string costDuration(double s)
{
    std::ostringstream out;
    if (s < 1.0)
        out << "< 1 s";
    else if (s < 90.0)
        out << std::llround(s) << " s";
    else if (s < 5400.0)
        out << std::llround(s / 60.0) << " min";
    else
        out << std::fixed << std::setprecision(1) << s / 3600.0 << " h";
    return out.str();
}

void addCostPart(CostEstimate& e, const std::string& what, double seconds)
{
    e.seconds += seconds;
    e.parts.push_back(what + " ≈ " + costDuration(seconds));
}

// Decompositions: an SVD of an m × n matrix costs about 6·m·n·min(m, n) flops, an eigendecomposition of an n × n
// matrix about 9·n³ (the constants of the textbook algorithms; dense LAPACK-style kernels run near the matmul rate).
double svdFlops(double m, double n)
{
    return 6.0 * m * n * std::min(m, n);
}

double rate(const ForwardProbe& probe)
{
    return probe.flopsPerSecond > 0 ? probe.flopsPerSecond : 1e9;
}

// The rows of the matrix a layer's latent compresses ([W_k_nope; W_v] with the default pairs) and its columns.
std::pair<double, double> layerMatrix(const ModelConfig& c)
{
    const double rows = static_cast<double>(c.kvHeads * (2 * c.headDim - 2 * defaultRopePairs(c)));
    return {rows, static_cast<double>(c.hidden)};
}

std::string basisOf(const ForwardProbe& probe)
{
    std::ostringstream out;
    out << "Measured probe: one forward of " << probe.tokens << " tokens on " << probe.device << " took "
        << std::setprecision(3) << probe.prefillSecondsPerToken * 1e3 * static_cast<double>(probe.tokens) << " ms, one decode step "
        << probe.decodeSecondsPerToken * 1e3 << " ms; the forward passes are scaled from it, the decompositions and "
           "measurements come from a cost model (flops at the probe's rate). Memory is a cost model of the buffers the "
           "step allocates. Fixed costs (thread start-up, file reading) are not in it, so small models take longer than it says.";
    return out.str();
}

// Calibration and the statistics pass over `tokens` (what Analyze does before the spectra, and what a conversion
// without an analysis does for itself).
void addCalibration(CostEstimate& e, const ModelConfig& c, const CalibrationOptions& calibration, std::int64_t tokens, const ForwardProbe& probe)
{
    const double t = static_cast<double>(tokens);
    if (calibration.source == CalibrationOptions::Source::Samples) {
        // The samples are drawn together, one step per position: a step costs one decode step, or the batch's tokens
        // at the prefill rate when that is more.
        const double samples = static_cast<double>(std::max<std::int64_t>(calibration.samples, 1));
        const double step = std::max(probe.decodeSecondsPerToken, samples * probe.prefillSecondsPerToken);
        addCostPart(e, "sampling " + std::to_string(tokens) + " calibration tokens", t / samples * step);
    }
    // The statistics pass: a forward over every token plus the input covariance of each layer (2·hidden² per token);
    // sampled on a backend whose decode steps can be observed, the statistics are measured while sampling and only
    // the covariance products remain.
    const double covariance = t * static_cast<double>(c.layers) * 2.0 * static_cast<double>(c.hidden * c.hidden) / rate(probe);
    if (calibration.source == CalibrationOptions::Source::Samples && probe.statisticsWhileSampling)
        addCostPart(e, "statistics measured while sampling", covariance);
    else
        addCostPart(e, "statistics pass", t * probe.prefillSecondsPerToken + covariance);
    // Hidden states of every calibration token, and a float64 covariance per layer.
    e.bytes += static_cast<std::uint64_t>(t * static_cast<double>(c.hidden) * 4.0 * 2.0)
               + static_cast<std::uint64_t>(c.layers) * static_cast<std::uint64_t>(c.hidden * c.hidden) * 8u;
    // The sampling cache: float32 keys and values of every sequence.
    if (calibration.source == CalibrationOptions::Source::Samples)
        e.bytes += static_cast<std::uint64_t>(t * static_cast<double>(c.kvElementsPerToken()) * 4.0);
}

} // namespace

ForwardProbe probeForward(const OpenedModel& model, const ExecutionContext& context, std::int64_t tokens)
{
    if (!model.model)
        throw Error("internal: no model to probe");
    const ModelConfig& c = model.model->config;
    tokens = std::clamp<std::int64_t>(tokens, 1, c.maxPositions > 16 ? (c.maxPositions - 8) / 2 : tokens);
    const Transformer transformer(*model.model);
    // Warmed up first (the first pass pays for thread start-up and first touches of the weights), then the prefill
    // timed once and the decode step as the fastest of four: one slow step on a busy machine would scale to minutes.
    const auto session = context.backend().decoderSession(transformer, 2 * tokens + 8);
    std::vector<int> ids(static_cast<std::size_t>(tokens));
    for (std::size_t i = 0; i < ids.size(); ++i)
        ids[i] = static_cast<int>((i * 7919 + 1) % static_cast<std::size_t>(std::max<std::int64_t>(c.vocab, 1)));
    session->forward(ids, Logits::Last);
    context.job().checkCancelled();
    const auto start = std::chrono::steady_clock::now();
    session->forward(ids, Logits::Last);
    const double prefill = costSecondsSince(start);
    context.job().checkCancelled();
    double decode = 1e30;
    for (int i = 0; i < 4; ++i) {
        const int next[1] = {ids[static_cast<std::size_t>(i) % ids.size()]};
        const auto step = std::chrono::steady_clock::now();
        session->forward(next, Logits::Last);
        decode = std::min(decode, costSecondsSince(step));
    }
    ForwardProbe p;
    p.device = context.backend().name();
    p.tokens = tokens;
    p.prefillSecondsPerToken = std::max(prefill, 1e-7) / static_cast<double>(tokens);
    p.decodeSecondsPerToken = std::max(decode, 1e-7);
    p.flopsPerSecond = 2.0 * static_cast<double>(model.model->parameterCount()) / p.prefillSecondsPerToken;
    p.statisticsWhileSampling = context.backend().batchDecodeObservable();
    return p;
}

std::int64_t expectedCalibrationTokens(const ModelConfig& c, const CalibrationOptions& calibration)
{
    std::int64_t length = std::max<std::int64_t>(calibration.sequenceLength, 1);
    if (c.maxPositions > 0)
        length = std::min(length, c.maxPositions);
    return std::max<std::int64_t>(calibration.samples, 1) * length;
}

CostEstimate estimateAnalysis(const ModelConfig& c, std::int64_t parameterCount, const Settings& settings, const ForwardProbe& probe)
{
    (void)parameterCount;
    CostEstimate e;
    e.basis = basisOf(probe);
    addCalibration(e, c, settings.calibration, expectedCalibrationTokens(c, settings.calibration), probe);
    // Weight spectra (joint, key, value) of every layer, and the same whitened by the activations (an
    // eigendecomposition of the covariance first).
    const auto [rows, columns] = layerMatrix(c);
    const double perLayer = 2.0 * svdFlops(rows, columns) + 9.0 * columns * columns * columns;
    addCostPart(e, "spectra of " + std::to_string(c.layers) + " layers", static_cast<double>(c.layers) * perLayer / rate(probe));
    return e;
}

CostEstimate estimateConversion(const ModelConfig& c, std::int64_t parameterCount, const Settings& settings, std::int64_t analysedTokens,
                                const ForwardProbe& probe)
{
    CostEstimate e;
    e.basis = basisOf(probe);
    const ConversionSettings& s = settings.conversion;
    std::int64_t tokens = analysedTokens;
    if (tokens <= 0 && conversionNeedsAnalysis(s)) {
        tokens = expectedCalibrationTokens(c, settings.calibration);
        addCalibration(e, c, settings.calibration, tokens, probe);
    }
    const auto [rows, columns] = layerMatrix(c);
    const double layers = static_cast<double>(c.layers);
    if (allocationPending(s) && s.target == ConversionTarget::Mha2mla) {
        // measureAllocationCandidates: about 8 pair counts (refined around the hull) × 12 widths per layer, each a
        // decomposition and the attention output on up to AllocationOptions::queryRows query rows of at most
        // 4096 calibration tokens.
        const double candidates = 12.0 * 12.0;
        const double measured = std::min<double>(static_cast<double>(std::max<std::int64_t>(tokens, 1)), 4096.0);
        const double queryRows = std::min<double>(measured, static_cast<double>(AllocationOptions{}.queryRows));
        const double perCandidate = svdFlops(rows, columns) / 4.0 + 2.0 * queryRows * measured * static_cast<double>(c.heads * c.headDim);
        addCostPart(e, "allocation (measured per layer)", layers * candidates * perCandidate / rate(probe));
    }
    // The conversion itself: a decomposition per layer (whitened: an eigendecomposition of the covariance first).
    double perLayer = svdFlops(rows, columns);
    if (s.activationAware)
        perLayer += 9.0 * columns * columns * columns;
    if (s.chooseBalance)
        perLayer *= 2.0; // balanced and plain, the better one kept
    addCostPart(e, "decompositions of " + std::to_string(c.layers) + " layers", layers * perLayer / rate(probe));
    // --decomposition randomized: the first layer decomposed both ways before the others (decomposition_check.h). The
    // per-layer figure above stays the exact path's: the check measures how the randomized one compares.
    if (s.decomposition == DecompositionMethod::Randomized && s.method != LatentMethod::None)
        addCostPart(e, "check of the randomized decomposition on layer 0", 2.0 * perLayer / rate(probe));
    if (settingsNeedCalibrationPass(s) && tokens > 0) {
        // Layer by layer in order on the calibration tokens: a forward of each layer over every token and the
        // least-squares refits (Gram matrices of the inputs, 2·hidden² per token, twice).
        const double t = static_cast<double>(tokens);
        const double refit = s.refit ? t * layers * 4.0 * columns * columns / rate(probe) : 0.0;
        addCostPart(e, "sequential pass over " + std::to_string(tokens) + " tokens", t * probe.prefillSecondsPerToken + refit);
        e.bytes += static_cast<std::uint64_t>(t * columns * 4.0 * 3.0);
        // The original model's layer inputs kept for these passes: every layer but the first, up to the trajectory's
        // cap (of the model's size taken as float32, an upper bound).
        const std::uint64_t trajectory = static_cast<std::uint64_t>(c.layers - 1) * OriginalTrajectory::layerBytes(tokens, c.hidden);
        e.bytes += std::min(trajectory, OriginalTrajectory::defaultCap(static_cast<std::uint64_t>(parameterCount) * 4u));
    }
    // The converted model is a second model in memory (float32 attention weights, the rest shared or copied).
    e.bytes += static_cast<std::uint64_t>(parameterCount) * 4u;
    return e;
}

} // namespace mla::pipeline
