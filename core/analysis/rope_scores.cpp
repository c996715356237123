#include "analysis/rope_scores.h"

#include "model/rope.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

// E_delta over delta = 0..context-1 of tr(A^T Q A K) with A = R(theta) - I, for 2x2 symmetric second moments Q, K.
// Sampled at up to 1024 evenly spaced distances; the integrand is smooth in delta at the scale of the sampling.
double meanRotationLoss(const double q[3], const double k[3], double frequency, std::int64_t context)
{
    const std::int64_t samples = std::min<std::int64_t>(context, 1024);
    double total = 0.0;
    for (std::int64_t i = 0; i < samples; ++i) {
        const double delta = samples == context ? static_cast<double>(i)
                                                : static_cast<double>(i) * static_cast<double>(context - 1) / static_cast<double>(samples - 1);
        const double c = std::cos(delta * frequency) - 1.0;
        const double s = std::sin(delta * frequency);
        // A = [[c, -s], [s, c]]; Q = [[qa, qab], [qab, qb]]; K likewise. M = A^T Q A.
        const double a00 = c, a01 = -s, a10 = s, a11 = c;
        const double qa = q[0], qb = q[1], qab = q[2];
        // Q A
        const double t00 = qa * a00 + qab * a10, t01 = qa * a01 + qab * a11;
        const double t10 = qab * a00 + qb * a10, t11 = qab * a01 + qb * a11;
        // A^T (Q A)
        const double m00 = a00 * t00 + a10 * t10, m01 = a00 * t01 + a10 * t11;
        const double m10 = a01 * t00 + a11 * t10, m11 = a01 * t01 + a11 * t11;
        // tr(M K)
        total += m00 * k[0] + m01 * k[2] + m10 * k[2] + m11 * k[1];
    }
    return total / static_cast<double>(samples);
}

} // namespace

LayerRopeScores computeRopeScores(const ModelConfig& c, const LayerStatistics& stats, std::int64_t context)
{
    if (stats.tokens <= 0)
        throw Error("internal: RoPE scores need calibration tokens");
    const std::int64_t pairs = c.headDim / 2;
    const double n = static_cast<double>(stats.tokens);
    const std::vector<float> freqs = ropeFrequencies(c.rope, c.headDim);
    LayerRopeScores s;
    s.queryNorm = stats.qPairNorm / n;
    s.keyNorm = stats.kPairNorm / n;
    s.perQuery.resize(c.heads, pairs);
    s.perKvHead = MatrixXdRM::Zero(c.kvHeads, pairs);
    s.rotationLossPerQuery.resize(c.heads, pairs);
    s.rotationLoss = MatrixXdRM::Zero(c.kvHeads, pairs);
    const std::int64_t group = c.group();
    for (std::int64_t h = 0; h < c.heads; ++h) {
        const std::int64_t kv = h / group;
        for (std::int64_t j = 0; j < pairs; ++j) {
            // Paper-compatible: the product of separately averaged norms, as the public code computes it.
            s.perQuery(h, j) = s.queryNorm(h, j) * s.keyNorm(kv, j);
            s.perKvHead(kv, j) += s.perQuery(h, j);
            const double q[3] = {stats.qPairMoment(h, 3 * j) / n, stats.qPairMoment(h, 3 * j + 1) / n, stats.qPairMoment(h, 3 * j + 2) / n};
            const double k[3] = {stats.kPairMoment(kv, 3 * j) / n, stats.kPairMoment(kv, 3 * j + 1) / n, stats.kPairMoment(kv, 3 * j + 2) / n};
            s.rotationLossPerQuery(h, j) = meanRotationLoss(q, k, freqs[static_cast<std::size_t>(j)], std::max<std::int64_t>(context, 1))
                                           / static_cast<double>(c.headDim);
            s.rotationLoss(kv, j) += s.rotationLossPerQuery(h, j);
        }
    }
    return s;
}

} // namespace mla
