#include "view_data/view_data.h"

#include "model/rope.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace mla::view {
namespace {

double measureValue(const LayerRopeScores& s, const ModelConfig& c, ScoreMeasure measure, std::int64_t kv, std::int64_t j)
{
    switch (measure) {
    case ScoreMeasure::TwoNorm:
        return s.perKvHead.size() ? s.perKvHead(kv, j) : 0.0;
    case ScoreMeasure::RotationLoss:
        return s.rotationLoss.size() ? s.rotationLoss(kv, j) : 0.0;
    case ScoreMeasure::QueryNorm: {
        if (!s.queryNorm.size())
            return 0.0;
        double sum = 0.0;
        const std::int64_t g = c.group();
        for (std::int64_t h = kv * g; h < (kv + 1) * g; ++h)
            sum += s.queryNorm(h, j);
        return sum;
    }
    case ScoreMeasure::KeyNorm:
        return s.keyNorm.size() ? s.keyNorm(kv, j) : 0.0;
    }
    return 0.0;
}

} // namespace

ScoreGrid ropeScoreGrid(const AnalysisResult& analysis, ScoreMeasure measure, std::int64_t kvHead,
                        const std::vector<LayerPairSelection>& selections)
{
    const ModelConfig& c = analysis.config;
    ScoreGrid g;
    g.rows = static_cast<std::int64_t>(analysis.layers.size());
    g.pairsPerHead = c.pairsPerHead();
    g.heads = kvHead < 0 ? c.kvHeads : 1;
    g.firstHead = kvHead < 0 ? 0 : std::min<std::int64_t>(kvHead, c.kvHeads - 1);
    g.columns = g.heads * g.pairsPerHead;
    g.values.assign(static_cast<std::size_t>(g.rows * g.columns), 0.0);
    g.kept.assign(g.values.size(), 0);
    double minPositive = 0.0;
    for (std::int64_t l = 0; l < g.rows; ++l) {
        const LayerRopeScores& s = analysis.layers[static_cast<std::size_t>(l)].scores;
        for (std::int64_t col = 0; col < g.columns; ++col) {
            const std::int64_t kv = g.headOfColumn(col);
            const std::int64_t j = g.pairOfColumn(col);
            const double v = measureValue(s, c, measure, kv, j);
            g.values[static_cast<std::size_t>(l * g.columns + col)] = v;
            g.maximum = std::max(g.maximum, v);
            if (v > 0.0 && (minPositive == 0.0 || v < minPositive))
                minPositive = v;
        }
    }
    g.minPositive = minPositive;
    markKept(g, selections);
    return g;
}

void markKept(ScoreGrid& g, const std::vector<LayerPairSelection>& selections)
{
    std::fill(g.kept.begin(), g.kept.end(), std::uint8_t{0});
    for (std::int64_t l = 0; l < g.rows && static_cast<std::size_t>(l) < selections.size(); ++l) {
        const LayerPairSelection& sel = selections[static_cast<std::size_t>(l)];
        for (std::int64_t h = 0; h < g.heads; ++h) {
            const std::size_t kv = static_cast<std::size_t>(g.firstHead + h);
            if (kv >= sel.size())
                continue;
            for (int j : sel[kv]) {
                if (j >= 0 && j < g.pairsPerHead)
                    g.kept[static_cast<std::size_t>(l * g.columns + h * g.pairsPerHead + j)] = 1;
            }
        }
    }
}

std::vector<PairFrequency> pairFrequencies(const ModelConfig& config)
{
    std::vector<PairFrequency> out;
    for (float f : ropeFrequencies(config.rope, config.headDim))
        out.push_back({static_cast<double>(f), ropeWavelength(f)});
    return out;
}

const std::vector<double>& spectrumValues(const KeyValueSpectra& s, SpectrumKind kind)
{
    switch (kind) {
    case SpectrumKind::Key:
        return s.key;
    case SpectrumKind::Value:
        return s.value;
    case SpectrumKind::Joint:
        break;
    }
    return s.joint;
}

std::vector<double> retainedEnergy(const KeyValueSpectra& s, SpectrumKind kind)
{
    const std::vector<double>& error = kind == SpectrumKind::Joint ? s.jointError : kind == SpectrumKind::Key ? s.keyError : s.valueError;
    std::vector<double> out;
    out.reserve(error.size());
    for (double e : error)
        out.push_back(std::clamp(1.0 - e * e, 0.0, 1.0));
    return out;
}

std::int64_t rankForLatent(LatentMethod method, SpectrumKind kind, std::int64_t latent)
{
    if (method == LatentMethod::Split) {
        const LatentSplit split = splitLatent(method, latent);
        return kind == SpectrumKind::Value ? split.value : split.key;
    }
    return latent;
}

std::int64_t latentForRank(LatentMethod method, SpectrumKind kind, std::int64_t rank)
{
    (void)kind;
    return method == LatentMethod::Split ? 2 * rank : rank;
}

bool methodUsesSpectrum(LatentMethod method, SpectrumKind kind)
{
    switch (method) {
    case LatentMethod::Joint:
        return kind == SpectrumKind::Joint;
    case LatentMethod::Split:
        return kind != SpectrumKind::Joint;
    case LatentMethod::Key:
        return kind == SpectrumKind::Key;
    case LatentMethod::Value:
        return kind == SpectrumKind::Value;
    case LatentMethod::None:
        break;
    }
    return false;
}

SpectrumKind primarySpectrum(LatentMethod method)
{
    switch (method) {
    case LatentMethod::Split:
    case LatentMethod::Key:
        return SpectrumKind::Key;
    case LatentMethod::Value:
        return SpectrumKind::Value;
    default:
        return SpectrumKind::Joint;
    }
}

std::vector<std::int64_t> contextGrid(const ModelConfig& config, std::int64_t upTo)
{
    const std::int64_t top = std::max({upTo, config.maxPositions, std::int64_t{4096}});
    std::vector<std::int64_t> out;
    for (std::int64_t n = 128; ; n *= 2) {
        out.push_back(n);
        if (n >= top || n >= (std::int64_t{1} << 40))
            break;
    }
    return out;
}

std::vector<double> cacheBytesCurve(const KvAccount& account, bool converted, const std::vector<std::int64_t>& contexts,
                                    std::int64_t batch, CacheFormat format, std::int64_t groupSize)
{
    std::vector<double> out;
    out.reserve(contexts.size());
    for (std::int64_t n : contexts)
        out.push_back(converted ? account.convertedCacheBytes(n, batch, format, groupSize)
                                : account.originalCacheBytes(n, batch, format, groupSize));
    return out;
}

std::vector<double> cacheBytesCurve(const KvAccount& account, bool converted, const std::vector<std::int64_t>& contexts,
                                    std::int64_t batch, const KvCacheFormat& format)
{
    const double perToken = converted ? account.convertedBytesPerToken(format) : account.originalBytesPerToken(format);
    std::vector<double> out;
    out.reserve(contexts.size());
    for (std::int64_t n : contexts)
        out.push_back(perToken * static_cast<double>(n) * static_cast<double>(batch));
    return out;
}

std::vector<MeasuredCache> measuredCaches(const SanityReport& report)
{
    std::vector<MeasuredCache> out;
    auto add = [&out](bool converted, const KvCacheFormat& format, double bytes) {
        if (bytes > 0.0)
            out.push_back({converted, format, kvCacheFormatName(format), bytes});
    };
    add(false, KvCacheFormat{}, report.originalKvBytesPerToken);
    add(true, KvCacheFormat{}, report.convertedKvBytesPerToken);
    KvCacheFormat chosen;
    if (parseKvCacheFormat(report.withCache.format, chosen) && !chosen.isFloat32())
        add(true, chosen, report.withCache.kvBytesPerToken);
    add(false, KvCacheFormat::uniform({CacheFormat::BF16}), report.originalBf16KvBytesPerToken);
    return out;
}

std::vector<double> measuredBytesCurve(double bytesPerToken, const std::vector<std::int64_t>& contexts, std::int64_t batch)
{
    std::vector<double> out;
    out.reserve(contexts.size());
    for (std::int64_t n : contexts)
        out.push_back(bytesPerToken * static_cast<double>(n) * static_cast<double>(batch));
    return out;
}

} // namespace mla::view
