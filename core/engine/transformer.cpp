#include "engine/transformer.h"

#include "engine/attention_math.h"
#include "engine/ops.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/input_integrity.h"

#include <cmath>

namespace mla {

Transformer::Transformer(Model model, MlaForm form, const KvCacheFormat& cacheFormat)
    : m_model(std::move(model)), m_form(form), m_cacheFormat(cacheFormat), m_plans(planAttention(m_model.config))
{
    if (m_model.config.deepseek)
        m_deepseek = makeDeepSeekRuntime(m_model, form);
    if (m_model.config.isMla() && form == MlaForm::Absorbed) {
        m_upK.resize(m_model.layers.size());
        m_upV.resize(m_model.layers.size());
        for (std::size_t l = 0; l < m_model.layers.size(); ++l) {
            const auto& m = m_model.config.mla->layers[l];
            if (m.compressesKeys() && !m_model.layers[l].upK.empty())
                m_upK[l] = m_model.layers[l].upK.toMatrix();
            if (m.compressesValues())
                m_upV[l] = m_model.layers[l].upV.toMatrix();
        }
    }
}

Transformer Transformer::withCacheFormat(const KvCacheFormat& format) const
{
    Transformer t(*this);
    t.m_cacheFormat = format;
    return t;
}

KvCache Transformer::newCache(std::int64_t capacity) const
{
    return KvCache(m_model.config, capacity, m_form, m_cacheFormat, m_model.source);
}

MatrixRM Transformer::embed(std::span<const int> tokens) const
{
    const ModelConfig& c = m_model.config;
    MatrixRM h(static_cast<Eigen::Index>(tokens.size()), c.hidden);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        const int id = tokens[t];
        if (id < 0 || id >= c.vocab)
            throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(c.vocab));
        m_model.embedding.rowToFloat(id, h.row(static_cast<Eigen::Index>(t)).data());
    }
    return h;
}

MatrixRM Transformer::logitsFromHidden(const MatrixRM& hidden) const
{
    MatrixRM xn, out;
    rmsNormRows(hidden, m_model.outputNorm, static_cast<float>(m_model.config.rmsEps), xn);
    matmulTransposed(m_model.output, xn, out);
    return out;
}

void Transformer::layerForward(std::int64_t l, MatrixRM& h, std::int64_t p0, LayerCache& cache, ForwardObserver* observer) const
{
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(l)];
    const float eps = static_cast<float>(m_model.config.rmsEps);
    MatrixRM xn, context, projected;
    rmsNormRows(h, w.attnNorm, eps, xn);
    attention(l, xn, p0, cache, context, observer);
    linear(w.o, w.oBias, context, projected);
    finishLayer(l, h, projected);
}

void Transformer::finishLayer(std::int64_t l, MatrixRM& h, const MatrixRM& attentionOutput) const
{
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(l)];
    const float eps = static_cast<float>(m_model.config.rmsEps);
    h += attentionOutput;
    MatrixRM xn, gate, up, projected;
    rmsNormRows(h, w.ffnNorm, eps, xn);
    linear(w.gate, w.gateBias, xn, gate);
    linear(w.up, w.upBias, xn, up);
    swiGluInPlace(gate, up);
    linear(w.down, w.downBias, gate, projected);
    h += projected;
}

void Transformer::runLayer(std::int64_t layer, MatrixRM& hidden, ForwardObserver* observer) const
{
    LayerCache cache = makeLayerCache(m_model.config, layer, hidden.rows(), m_form);
    layerForward(layer, hidden, 0, cache, observer);
}

MatrixRM Transformer::attentionContext(std::int64_t layer, const MatrixRM& normedInput, ForwardObserver* observer) const
{
    LayerCache cache = makeLayerCache(m_model.config, layer, normedInput.rows(), m_form);
    MatrixRM context;
    attention(layer, normedInput, 0, cache, context, observer);
    return context;
}

MatrixRM Transformer::forward(std::span<const int> tokens, KvCache& cache, Logits logits, ForwardObserver* observer,
                              std::int64_t lastLayer) const
{
    const ModelConfig& c = m_model.config;
    const std::int64_t T = static_cast<std::int64_t>(tokens.size());
    const std::int64_t p0 = cache.length();
    if (T == 0)
        return MatrixRM();
    if (p0 + T > cache.capacity())
        throw Error("context full: " + std::to_string(p0 + T) + " tokens do not fit a cache of "
                    + std::to_string(cache.capacity()));
    MatrixRM h = embed(tokens);
    const std::int64_t layers = lastLayer >= 0 ? std::min(lastLayer + 1, c.layers) : c.layers;
    for (std::int64_t l = 0; l < layers; ++l)
        layerForward(l, h, p0, cache.layer(l), observer);
    checkMappedInputs(); // weights read from a file that shrank meanwhile are zeros: an error, not a result
    cache.setLength(p0 + T);
    if (logits == Logits::None || layers < c.layers)
        return MatrixRM();
    return logitsFromHidden(logits == Logits::Last ? MatrixRM(h.bottomRows(1)) : h);
}

void Transformer::attention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& cache, MatrixRM& context,
                            ForwardObserver* observer) const
{
    if (m_deepseek)
        deepSeekAttention(layer, x, p0, cache, context, observer);
    else if (m_plans[static_cast<std::size_t>(layer)].latent && m_form == MlaForm::Absorbed)
        absorbedAttention(layer, x, p0, cache, context, observer);
    else
        standardAttention(layer, x, p0, cache, context, observer);
}

void rotateHeads(MatrixRM& x, std::int64_t headWidth, std::int64_t group, const std::vector<std::vector<int>>& pairIndex,
                 std::int64_t halfOffset, const std::vector<std::vector<float>>& freqs, std::int64_t p0)
{
    const std::int64_t heads = x.cols() / headWidth;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const std::int64_t position = p0 + t;
        for (std::int64_t h = 0; h < heads; ++h) {
            const std::size_t kv = static_cast<std::size_t>(h / group);
            float* head = x.row(t).data() + h * headWidth;
            const auto& index = pairIndex[kv];
            const auto& f = freqs[kv];
            for (std::size_t i = 0; i < index.size(); ++i) {
                const float angle = static_cast<float>(position) * f[i];
                const float cs = std::cos(angle);
                const float sn = std::sin(angle);
                float& a = head[index[i]];
                float& b = head[index[i] + halfOffset];
                const float a0 = a;
                a = a0 * cs - b * sn;
                b = a0 * sn + b * cs;
            }
        }
    }
}

} // namespace mla
