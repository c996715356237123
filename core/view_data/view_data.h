#pragma once

#include "analysis/analysis_result.h"
#include "analysis/kv_accounting.h"
#include "conversion/conversion_settings.h"
#include "conversion/sanity_check.h"
#include "model/model_config.h"

#include <cstdint>
#include <vector>

// Plain data prepared for the workbench's views: every number a plot or a table shows is computed here, from core's
// results, so the widgets only lay out what they are given. No Qt, and no domain rule either (those live in core's
// analysis, conversion and settings folders): a separate library (mla_view_data) that the widgets and its tests link.
namespace mla::view {

// Which per-pair measure the RoPE heatmap shows (method document, section 1).
enum class ScoreMeasure {
    TwoNorm,      // score_kv[l, k, j] = sum over the group's query heads of qn * kn (what 2-norm selection uses)
    RotationLoss, // expected squared logit change when the pair stops rotating (our second measure)
    QueryNorm,    // mean query pair norm, summed over the group's query heads
    KeyNorm,      // mean key pair norm kn[l, k, j]
};

// Layers (rows) by frequency pairs (columns) of one KV head, or of every KV head side by side (column
// head * pairsPerHead + j).
struct ScoreGrid {
    std::int64_t rows = 0;
    std::int64_t columns = 0;
    std::int64_t pairsPerHead = 0;
    std::int64_t heads = 0;        // KV heads shown (1, or all)
    std::int64_t firstHead = 0;    // the KV head of column 0
    std::vector<double> values;    // row-major [rows, columns]
    std::vector<std::uint8_t> kept; // 1 where the pair keeps its rotation under the current selection
    double minPositive = 0.0;      // smallest value > 0 (for a logarithmic colour scale); 0 when none
    double maximum = 0.0;

    double value(std::int64_t row, std::int64_t column) const { return values[static_cast<std::size_t>(row * columns + column)]; }
    bool isKept(std::int64_t row, std::int64_t column) const { return kept[static_cast<std::size_t>(row * columns + column)] != 0; }
    std::int64_t headOfColumn(std::int64_t column) const { return firstHead + column / pairsPerHead; }
    std::int64_t pairOfColumn(std::int64_t column) const { return column % pairsPerHead; }
};

// `kvHead` < 0 shows every KV head. `selections` ([layer][kvHead] -> kept pairs) may be empty (nothing outlined).
ScoreGrid ropeScoreGrid(const AnalysisResult& analysis, ScoreMeasure measure, std::int64_t kvHead,
                        const std::vector<LayerPairSelection>& selections);

// Re-marks the kept cells of a grid for new selections (the values stay): what a settings move changes.
void markKept(ScoreGrid& grid, const std::vector<LayerPairSelection>& selections);

// Angular frequency w_j (radians per token) and wavelength 2 pi / w_j (tokens) of every pair of a head.
struct PairFrequency {
    double frequency = 0.0;
    double wavelength = 0.0;
};
std::vector<PairFrequency> pairFrequencies(const ModelConfig& config);

// Which singular values a spectrum view shows.
enum class SpectrumKind { Joint, Key, Value };
const std::vector<double>& spectrumValues(const KeyValueSpectra& spectra, SpectrumKind kind);
// Retained energy sum_{i<k} s_i^2 / sum_i s_i^2 for k = 0..n, from the closed-form error curve (1 - e_k^2).
std::vector<double> retainedEnergy(const KeyValueSpectra& spectra, SpectrumKind kind);

// The spectrum rank a latent width corresponds to for a method and side (splitLatent: split gives each side half, as
// the converter does) and back: the latent width that puts `rank` on that side.
std::int64_t rankForLatent(LatentMethod method, SpectrumKind kind, std::int64_t latent);
std::int64_t latentForRank(LatentMethod method, SpectrumKind kind, std::int64_t rank);
// Whether a conversion with `method` truncates the spectrum `kind` (and so a rank cursor belongs on it).
bool methodUsesSpectrum(LatentMethod method, SpectrumKind kind);
// The spectrum a method compresses by default (joint for joint, key for split and key-only, value for value-only).
SpectrumKind primarySpectrum(LatentMethod method);

// Context lengths for memory plots: powers of two from 128 up to at least `upTo` (and the model's own context).
std::vector<std::int64_t> contextGrid(const ModelConfig& config, std::int64_t upTo);
// Whole-cache bytes of the original or converted model at each context length.
std::vector<double> cacheBytesCurve(const KvAccount& account, bool converted, const std::vector<std::int64_t>& contexts,
                                    std::int64_t batch, CacheFormat format, std::int64_t groupSize = 64);
// The same for a whole cache format (latent and RoPE parts as given): what the engine allocates for it.
std::vector<double> cacheBytesCurve(const KvAccount& account, bool converted, const std::vector<std::int64_t>& contexts,
                                    std::int64_t batch, const KvCacheFormat& format);

// A KV cache the sanity check really allocated: which model, in which format, and its bytes per token measured from
// the allocation (allocated bytes / capacity in tokens, scales included).
struct MeasuredCache {
    bool converted = false;
    KvCacheFormat format;
    std::string formatName; // kvCacheFormatName(format)
    double bytesPerToken = 0.0;
};
// The caches a sanity report measured: the original and the converted model with a float32 cache, the converted model
// with the cache format it was checked with (when that is not float32) and the original with a BF16 cache. A figure
// the report does not hold (0, an older session) is left out; so is a format name that does not parse.
std::vector<MeasuredCache> measuredCaches(const SanityReport& report);
// Whole-cache bytes at each context length for `batch` sequences from a measured bytes-per-token figure: the engine
// allocates capacity x row bytes per sequence, so this is what it allocates at that context, with no formula in it.
std::vector<double> measuredBytesCurve(double bytesPerToken, const std::vector<std::int64_t>& contexts, std::int64_t batch);

} // namespace mla::view
