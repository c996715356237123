#include "analysis/rope_selection.h"

#include "util/error.h"

#include <algorithm>
#include <numeric>

namespace mla {
namespace {

struct StrategyName {
    RopeStrategy strategy;
    std::string_view name;
    bool needsScores;
};

constexpr StrategyName kStrategies[] = {
    {RopeStrategy::High, "high", false},
    {RopeStrategy::Low, "low", false},
    {RopeStrategy::Uniform, "uniform", false},
    {RopeStrategy::TwoNorm, "2-norm", true},
    {RopeStrategy::RotationLoss, "rotation-loss", true},
};

std::vector<int> topPairs(const MatrixXdRM& scores, std::int64_t row, std::int64_t pairs)
{
    std::vector<int> order(static_cast<std::size_t>(scores.cols()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores(row, a) > scores(row, b); });
    order.resize(static_cast<std::size_t>(pairs));
    std::sort(order.begin(), order.end());
    return order;
}

} // namespace

std::string_view ropeStrategyName(RopeStrategy s)
{
    return kStrategies[static_cast<int>(s)].name;
}

bool parseRopeStrategy(std::string_view name, RopeStrategy& out)
{
    for (const auto& s : kStrategies) {
        if (s.name == name) {
            out = s.strategy;
            return true;
        }
    }
    if (name == "2norm") {
        out = RopeStrategy::TwoNorm;
        return true;
    }
    return false;
}

bool ropeStrategyNeedsScores(RopeStrategy s)
{
    return kStrategies[static_cast<int>(s)].needsScores;
}

std::int64_t defaultRopePairs(const ModelConfig& c)
{
    return std::max<std::int64_t>(1, (c.headDim + 15) / 16);
}

LayerPairSelection selectLayerPairs(const ModelConfig& c, RopeStrategy strategy, std::int64_t p, std::int64_t start,
                                    const LayerRopeScores* scores)
{
    const std::int64_t half = c.headDim / 2;
    if (p < 0 || p > half)
        throw Error("RoPE pairs per head must be between 0 and " + std::to_string(half) + " (head size " + std::to_string(c.headDim)
                    + "), got " + std::to_string(p));
    LayerPairSelection selection(static_cast<std::size_t>(c.kvHeads));
    for (std::int64_t kv = 0; kv < c.kvHeads; ++kv) {
        std::vector<int>& kept = selection[static_cast<std::size_t>(kv)];
        switch (strategy) {
        case RopeStrategy::High:
            for (std::int64_t j = 0; j < p; ++j)
                kept.push_back(static_cast<int>(j));
            break;
        case RopeStrategy::Low:
            for (std::int64_t j = half - p; j < half; ++j)
                kept.push_back(static_cast<int>(j));
            break;
        case RopeStrategy::Uniform:
            for (std::int64_t i = 0; i < p; ++i) {
                const std::int64_t j = start + i * c.headDim / (2 * p);
                if (j >= half)
                    throw Error("uniform RoPE selection with start " + std::to_string(start) + " and " + std::to_string(p)
                                + " pairs runs past the last pair (" + std::to_string(half - 1) + ")");
                kept.push_back(static_cast<int>(j));
            }
            break;
        case RopeStrategy::TwoNorm:
        case RopeStrategy::RotationLoss:
            if (!scores)
                throw Error("the " + std::string(ropeStrategyName(strategy)) + " strategy needs calibration scores");
            kept = topPairs(strategy == RopeStrategy::TwoNorm ? scores->perKvHead : scores->rotationLoss, kv, p);
            break;
        }
    }
    return selection;
}

} // namespace mla
