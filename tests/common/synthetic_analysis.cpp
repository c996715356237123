#include "common/synthetic_analysis.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

namespace mla::test {
namespace {

std::vector<double> powerLaw(std::int64_t n, double exponent, double scale, std::mt19937_64& rng)
{
    std::uniform_real_distribution<double> jitter(0.97, 1.03);
    std::vector<double> s(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
    for (std::size_t i = 0; i < s.size(); ++i)
        s[i] = scale * std::pow(static_cast<double>(i + 1), -exponent) * jitter(rng);
    std::sort(s.begin(), s.end(), std::greater<>());
    return s;
}

} // namespace

AnalysisResult syntheticAnalysis(const ModelConfig& c, std::uint64_t seed, bool activations)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.5, 1.5);
    AnalysisResult a;
    a.config = c;
    a.modelPath = "synthetic";
    a.modelFingerprint = "synthetic";
    a.calibrationDescription = "synthetic scores and spectra";
    a.calibrationSource = "samples";
    a.calibrationTokens = 4096;
    a.scoreContext = 256;
    a.settings.ropePairs = defaultRopePairs(c);
    const std::int64_t pairs = c.pairsPerHead();
    const std::int64_t p = a.settings.ropePairs;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        LayerAnalysis layer;
        LayerRopeScores& s = layer.scores;
        s.queryNorm = MatrixXdRM(c.heads, pairs);
        s.keyNorm = MatrixXdRM(c.kvHeads, pairs);
        for (std::int64_t h = 0; h < c.heads; ++h)
            for (std::int64_t j = 0; j < pairs; ++j)
                s.queryNorm(h, j) = u(rng) * (1.0 + 3.0 * std::exp(-static_cast<double>(j) / 4.0));
        for (std::int64_t k = 0; k < c.kvHeads; ++k)
            for (std::int64_t j = 0; j < pairs; ++j)
                s.keyNorm(k, j) = u(rng) * (1.0 + 2.0 * std::exp(-static_cast<double>(pairs - 1 - j) / 6.0));
        s.perQuery = MatrixXdRM(c.heads, pairs);
        s.rotationLossPerQuery = MatrixXdRM(c.heads, pairs);
        s.perKvHead = MatrixXdRM::Zero(c.kvHeads, pairs);
        s.rotationLoss = MatrixXdRM::Zero(c.kvHeads, pairs);
        for (std::int64_t h = 0; h < c.heads; ++h) {
            const std::int64_t k = h / c.group();
            for (std::int64_t j = 0; j < pairs; ++j) {
                s.perQuery(h, j) = s.queryNorm(h, j) * s.keyNorm(k, j);
                s.rotationLossPerQuery(h, j) = s.perQuery(h, j) * s.perQuery(h, j) * std::exp(-static_cast<double>(j) / 8.0);
                s.perKvHead(k, j) += s.perQuery(h, j);
                s.rotationLoss(k, j) += s.rotationLossPerQuery(h, j);
            }
        }
        layer.selection = selectLayerPairs(c, a.settings.strategy, p, 0, &s);
        const std::int64_t rowsK = c.kvHeads * (c.headDim - 2 * p);
        const std::int64_t rowsV = c.kvDim();
        const double exponent = 0.35 + 0.02 * static_cast<double>(l % 7);
        layer.weightSpectra = makeSpectra(powerLaw(std::min(rowsK + rowsV, c.hidden), exponent, 4.0, rng),
                                          powerLaw(std::min(rowsK, c.hidden), exponent, 3.0, rng),
                                          powerLaw(std::min(rowsV, c.hidden), exponent * 0.8, 3.0, rng));
        if (activations)
            layer.activationSpectra = makeSpectra(powerLaw(std::min(rowsK + rowsV, c.hidden), exponent * 1.6, 4.0, rng),
                                                  powerLaw(std::min(rowsK, c.hidden), exponent * 1.6, 3.0, rng),
                                                  powerLaw(std::min(rowsV, c.hidden), exponent * 1.3, 3.0, rng));
        a.layers.push_back(std::move(layer));
    }
    return a;
}

ModelConfig sixLayerShape()
{
    ModelConfig c;
    c.hidden = 256;
    c.layers = 6;
    c.heads = 8;
    c.kvHeads = 4;
    c.headDim = 32;
    c.vocab = 1000;
    c.maxPositions = 2048;
    c.ffn = 688;
    return c;
}

ModelConfig threeLayerShape()
{
    ModelConfig c;
    c.hidden = 64;
    c.layers = 3;
    c.heads = 8;
    c.kvHeads = 4;
    c.headDim = 8;
    c.vocab = 512;
    c.maxPositions = 256;
    c.ffn = 172;
    return c;
}

} // namespace mla::test
