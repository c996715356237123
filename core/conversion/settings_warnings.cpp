#include "conversion/settings_warnings.h"

#include <sstream>

namespace mla {
namespace {

// "0, 2, 5" or "0, 1, 2, … (12 layers)".
std::string warningLayerList(const std::vector<std::int64_t>& layers)
{
    std::ostringstream out;
    const std::size_t shown = layers.size() > 6 ? 4 : layers.size();
    for (std::size_t i = 0; i < shown; ++i)
        out << (i ? ", " : "") << layers[i];
    if (shown < layers.size())
        out << ", … (" << layers.size() << " layers)";
    return out.str();
}

} // namespace

std::int64_t numericalRank(const std::vector<double>& singular, double relative)
{
    if (singular.empty() || !(singular.front() > 0.0))
        return 0;
    const double floor = singular.front() * relative;
    std::int64_t rank = 0;
    for (double s : singular)
        rank += s > floor ? 1 : 0;
    return rank;
}

std::vector<std::string> conversionWarnings(const ModelConfig& config, const ConversionPreview& preview, const AnalysisResult* analysis)
{
    std::vector<std::string> out;
    if (!preview.problem.empty() || preview.layers.empty())
        return out;
    if (preview.kv.convertedTotal > preview.kv.originalTotal) {
        std::ostringstream s;
        s << "the converted model caches " << preview.kv.convertedTotal << " elements per token, more than the original's "
          << preview.kv.originalTotal << ": a smaller latent width (or fewer RoPE pairs) is needed for any saving";
        out.push_back(s.str());
    }
    std::vector<std::int64_t> grown;
    std::int64_t grownLatent = 0, grownAfter = 0, grownBefore = 0;
    for (std::size_t l = 0; l < preview.layers.size(); ++l) {
        const LayerPreview& p = preview.layers[l];
        if (p.kvConverted > p.kvOriginal) {
            if (grown.empty()) {
                grownLatent = p.latentK + p.latentV;
                grownAfter = p.kvConverted;
                grownBefore = p.kvOriginal;
            }
            grown.push_back(static_cast<std::int64_t>(l));
        }
    }
    if (!grown.empty()) {
        std::ostringstream s;
        s << "layer" << (grown.size() > 1 ? "s " : " ") << warningLayerList(grown) << " cache more than before: latent "
          << grownLatent << " + " << config.kvHeads << " KV heads × " << (grownAfter - grownLatent) / std::max<std::int64_t>(config.kvHeads, 1)
          << " RoPE dims = " << grownAfter << " elements per token against the original 2 × " << config.kvHeads << " × "
          << config.headDim << " = " << grownBefore;
        out.push_back(s.str());
    }
    if (analysis && analysis->layers.size() == preview.layers.size()) {
        std::vector<std::int64_t> deficient;
        std::int64_t width = 0, rank = 0;
        for (std::size_t l = 0; l < preview.layers.size(); ++l) {
            const LayerPreview& p = preview.layers[l];
            const KeyValueSpectra& spectra = analysis->layers[l].weightSpectra;
            // Joint (and key-only) latents compress the joint / key spectrum; split and value-only check each side.
            std::int64_t r = -1, w = 0;
            if (p.latentV == 0 && p.latentK > 0) {
                r = numericalRank(spectra.joint.empty() ? spectra.key : spectra.joint);
                w = p.latentK;
            } else if (p.latentV > 0) {
                const std::int64_t rk = p.latentK > 0 ? numericalRank(spectra.key) : 0;
                const std::int64_t rv = numericalRank(spectra.value);
                if ((p.latentK > rk && rk > 0) || (p.latentV > rv && rv > 0)) {
                    r = rk + rv;
                    w = p.latentK + p.latentV;
                }
            }
            if (r > 0 && w > r) {
                if (deficient.empty()) {
                    width = w;
                    rank = r;
                }
                deficient.push_back(static_cast<std::int64_t>(l));
            }
        }
        if (!deficient.empty()) {
            std::ostringstream s;
            s << "layer" << (deficient.size() > 1 ? "s " : " ") << warningLayerList(deficient) << " would be rank-deficient: a latent of "
              << width << " is wider than the rank " << rank << " of what it compresses (measured on the weights), so "
              << (width - rank) << " of its columns carry nothing but still take cache";
            out.push_back(s.str());
        }
    }
    return out;
}

} // namespace mla
