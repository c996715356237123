#include "conversion/rope_sharing.h"

#include "model/rope.h"
#include "util/error.h"

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

namespace mla {
namespace {

using cd = std::complex<double>;

// At most this many components per slot enter the dynamic programme (the largest by what dropping them would cost);
// the rest are position-free, which costs them their (then negligible) drop cost.
constexpr std::size_t kCandidatesPerSlot = 8;

struct LayerProblem {
    std::vector<int> index;     // components considered, by frequency descending
    std::vector<double> skip;   // cost of making each position-free
    double forced = 0.0;        // drop cost of the components left out of the programme
    double total = 0.0;         // the layer's rope energy (normaliser)
};

LayerProblem layerProblem(const std::vector<RopeComponent>& components, std::int64_t slots, std::int64_t context)
{
    LayerProblem p;
    std::vector<double> drop(components.size());
    for (std::size_t c = 0; c < components.size(); ++c) {
        drop[c] = components[c].energy * frequencyErrorLoss(components[c].frequency, context);
        p.total += components[c].energy;
    }
    std::vector<int> order(components.size());
    std::iota(order.begin(), order.end(), 0);
    const std::size_t keep = std::min(order.size(), kCandidatesPerSlot * static_cast<std::size_t>(std::max<std::int64_t>(slots, 1)));
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return drop[static_cast<std::size_t>(a)] > drop[static_cast<std::size_t>(b)]; });
    std::vector<int> kept(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep));
    for (std::size_t i = keep; i < order.size(); ++i)
        p.forced += drop[static_cast<std::size_t>(order[i])];
    std::sort(kept.begin(), kept.end()); // components are stored by frequency descending
    p.index = kept;
    for (int c : kept)
        p.skip.push_back(drop[static_cast<std::size_t>(c)]);
    return p;
}

// Minimal loss of a monotone assignment of the problem's components to the ladder (slots may stay empty), and the
// assignment when `slotsOut` is given.
double assign(const std::vector<RopeComponent>& components, const LayerProblem& p, const std::vector<double>& ladder,
              std::int64_t context, std::vector<int>* slotsOut)
{
    const std::size_t K = p.index.size();
    const std::size_t S = ladder.size();
    constexpr double kInf = std::numeric_limits<double>::infinity();
    std::vector<double> prev(S + 1, 0.0), cur(S + 1, kInf);
    // choice: 0 = component skipped, 1 = matched to slot i-1, 2 = slot i-1 left empty
    std::vector<unsigned char> choice(slotsOut ? (K + 1) * (S + 1) : 0, 2);
    for (std::size_t k = 1; k <= K; ++k) {
        const RopeComponent& comp = components[static_cast<std::size_t>(p.index[k - 1])];
        cur[0] = prev[0] + p.skip[k - 1];
        if (slotsOut)
            choice[k * (S + 1)] = 0;
        for (std::size_t i = 1; i <= S; ++i) {
            double best = prev[i] + p.skip[k - 1];
            unsigned char how = 0;
            const double match = prev[i - 1] + comp.energy * frequencyErrorLoss(ladder[i - 1] - comp.frequency, context);
            if (match < best) {
                best = match;
                how = 1;
            }
            if (cur[i - 1] < best) {
                best = cur[i - 1];
                how = 2;
            }
            cur[i] = best;
            if (slotsOut)
                choice[k * (S + 1) + i] = how;
        }
        std::swap(prev, cur);
    }
    if (slotsOut) {
        slotsOut->assign(S, -1);
        std::size_t k = K, i = S;
        while (k > 0 && i > 0) {
            const unsigned char how = choice[k * (S + 1) + i];
            if (how == 0) {
                --k;
            } else if (how == 1) {
                (*slotsOut)[i - 1] = p.index[k - 1];
                --k;
                --i;
            } else {
                --i;
            }
        }
    }
    return prev[S] + p.forced;
}

} // namespace

RopePairStatistics emptyRopePairStatistics(const ModelConfig& c)
{
    RopePairStatistics s;
    s.keyCovariance.assign(static_cast<std::size_t>(c.pairsPerHead()), Eigen::MatrixXcd::Zero(c.kvHeads, c.kvHeads));
    s.queryEnergy = MatrixXdRM::Zero(c.heads, c.pairsPerHead());
    return s;
}

void accumulateRopePairs(const ModelConfig& c, const MatrixRM& queries, const MatrixRM& keys, RopePairStatistics& stats)
{
    const std::int64_t T = keys.rows(), d = c.headDim, half = d / 2;
    Eigen::MatrixXcd z(T, c.kvHeads);
    for (std::int64_t j = 0; j < half; ++j) {
        for (std::int64_t g = 0; g < c.kvHeads; ++g) {
            for (std::int64_t t = 0; t < T; ++t)
                z(t, g) = cd(keys(t, g * d + j), keys(t, g * d + j + half));
        }
        stats.keyCovariance[static_cast<std::size_t>(j)].noalias() += z.transpose() * z.conjugate();
        for (std::int64_t h = 0; h < c.heads; ++h) {
            const auto a = queries.col(h * d + j).cast<double>();
            const auto b = queries.col(h * d + j + half).cast<double>();
            stats.queryEnergy(h, j) += a.squaredNorm() + b.squaredNorm();
        }
    }
    stats.tokens += T;
}

std::vector<RopeComponent> ropeComponents(const ModelConfig& c, const RopePairStatistics& stats)
{
    if (stats.tokens <= 0)
        throw Error("internal: RoPE pair statistics without calibration tokens");
    const std::vector<float> freqs = ropeFrequencies(c.rope, c.headDim);
    const std::int64_t group = c.group();
    std::vector<RopeComponent> out;
    for (std::int64_t j = 0; j < c.pairsPerHead(); ++j) {
        Eigen::VectorXd weight = Eigen::VectorXd::Zero(c.kvHeads);
        for (std::int64_t h = 0; h < c.heads; ++h)
            weight(h / group) += stats.queryEnergy(h, j) / static_cast<double>(stats.tokens);
        const double floor = std::max(weight.maxCoeff(), 1e-300) * 1e-12;
        const Eigen::VectorXd root = weight.cwiseMax(floor).cwiseSqrt();
        const Eigen::MatrixXcd cov = stats.keyCovariance[static_cast<std::size_t>(j)] / static_cast<double>(stats.tokens);
        const Eigen::MatrixXcd weighted = root.asDiagonal() * cov * root.asDiagonal();
        const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXcd> eig(0.5 * (weighted + weighted.adjoint()));
        for (std::int64_t e = c.kvHeads - 1; e >= 0; --e) {
            const Eigen::VectorXcd v = eig.eigenvectors().col(e);
            RopeComponent comp;
            comp.pair = static_cast<int>(j);
            comp.frequency = freqs[static_cast<std::size_t>(j)];
            comp.energy = std::max(0.0, eig.eigenvalues()(e));
            for (std::int64_t g = 0; g < c.kvHeads; ++g) {
                comp.down.push_back(std::conj(v(g)) * root(g));
                comp.up.push_back(v(g) / root(g));
            }
            out.push_back(std::move(comp));
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const RopeComponent& a, const RopeComponent& b) {
        if (a.frequency != b.frequency)
            return a.frequency > b.frequency;
        return a.energy > b.energy;
    });
    return out;
}

double frequencyErrorLoss(double delta, std::int64_t context)
{
    const double n = static_cast<double>(std::max<std::int64_t>(context, 1));
    const double x = std::abs(delta);
    if (x * n < 1e-3) {
        // Small-angle limit: E[d^2] delta^2 / 2 with sum_{d<n} (n - d) d^2 = n^2 (n^2 - 1) / 12.
        const double meanSquare = (n * n * (n * n - 1.0) / 12.0) / (n * (n + 1.0) / 2.0);
        return 0.5 * meanSquare * x * x;
    }
    // sum_{d=0}^{n-1} (n - d) cos(d x) = (F + n) / 2 with the Fejer kernel F = sin^2(n x / 2) / sin^2(x / 2).
    const double s = std::sin(x / 2.0);
    const double fejer = std::pow(std::sin(n * x / 2.0) / s, 2.0);
    return std::max(0.0, 1.0 - (fejer + n) / (n * (n + 1.0)));
}

std::vector<double> ropeLadder(double theta, std::int64_t ropeDim)
{
    std::vector<double> w(static_cast<std::size_t>(ropeDim / 2));
    for (std::int64_t i = 0; i < ropeDim / 2; ++i)
        w[static_cast<std::size_t>(i)] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(ropeDim));
    return w;
}

SharedRopeLayout chooseSharedRope(const std::vector<std::vector<RopeComponent>>& layers, std::int64_t ropeDim, std::int64_t context)
{
    if (ropeDim < 2 || ropeDim % 2 != 0)
        throw Error("internal: the shared RoPE width must be a positive even number");
    const std::int64_t slots = ropeDim / 2;
    std::vector<LayerProblem> problems;
    std::set<double> frequencies;
    for (const auto& layer : layers) {
        problems.push_back(layerProblem(layer, slots, context));
        for (const auto& comp : layer) {
            if (comp.frequency > 0.0 && comp.frequency < 1.0)
                frequencies.insert(comp.frequency);
        }
    }
    // theta = e^a. Ladders that put slot i exactly on an original frequency w (a = -(ropeDim / 2i) ln w), and a
    // logarithmic grid between a = 1e-3 (every slot near frequency 1) and beyond the slowest frequency.
    std::set<double> grid;
    double slowest = 1.0;
    for (double w : frequencies) {
        slowest = std::min(slowest, w);
        for (std::int64_t i = 1; i < slots; ++i)
            grid.insert(-static_cast<double>(ropeDim) / (2.0 * static_cast<double>(i)) * std::log(w));
    }
    const double aMin = 1e-3, aMax = std::max(1.0, -1.5 * std::log(slowest) * static_cast<double>(ropeDim) / 2.0);
    constexpr int kGrid = 160;
    for (int g = 0; g < kGrid; ++g)
        grid.insert(aMin * std::pow(aMax / aMin, static_cast<double>(g) / (kGrid - 1)));

    SharedRopeLayout best;
    best.cost = std::numeric_limits<double>::infinity();
    for (double a : grid) {
        if (!(a >= aMin))
            continue;
        const double theta = std::exp(a);
        const std::vector<double> ladder = ropeLadder(theta, ropeDim);
        double total = 0.0;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const double cost = assign(layers[l], problems[l], ladder, context, nullptr);
            total += problems[l].total > 0.0 ? cost / problems[l].total : 0.0;
        }
        if (total < best.cost) {
            best.cost = total;
            best.theta = theta;
        }
    }
    // Six significant digits: a ladder found from float32 frequencies lands a hair off the value it means (10000
    // read back as 9999.9994), and the predicted loss does not see the difference.
    const double digits = std::pow(10.0, std::floor(std::log10(best.theta)) - 5.0);
    best.theta = std::max(std::round(best.theta / digits) * digits, 1.0 + 1e-6);
    const std::vector<double> ladder = ropeLadder(best.theta, ropeDim);
    best.cost = 0.0;
    best.slotComponents.resize(layers.size());
    best.layerCost.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
        const double cost = assign(layers[l], problems[l], ladder, context, &best.slotComponents[l]);
        best.layerCost[l] = problems[l].total > 0.0 ? cost / problems[l].total : 0.0;
        best.cost += best.layerCost[l];
    }
    return best;
}

} // namespace mla
