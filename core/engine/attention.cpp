// Standard grouped-query attention, also used for the expanded form of MLA layers (keys and values rebuilt from
// the latent in the original head layout, RoPE only on the kept pairs).
#include "engine/cache_attention.h"
#include "engine/ops.h"
#include "engine/transformer.h"

#include <cmath>

namespace mla {
namespace {

// Rebuilds an MLA layer's pre-RoPE queries, keys and values in the original per-head dim order.
void expandLatentLayer(const ModelConfig& c, const LayerWeights& w, const MlaLayerConfig& m, const LayerAttentionPlan& plan,
                       const MatrixRM& x, MatrixRM& q, MatrixRM& k, MatrixRM& v)
{
    const std::int64_t T = x.rows();
    const std::int64_t d = c.headDim;
    const std::int64_t r = 2 * plan.ropePairs;
    MatrixRM qReordered, kRope, keyInput, valueInput, kNope;
    linear(w.q, w.qBias, x, qReordered);
    if (r > 0)
        linear(w.kRope, w.kRopeBias, x, kRope);
    const MatrixRM* keySource = &x;
    const MatrixRM* valueSource = &x;
    if (!w.downKv.empty()) {
        linear(w.downKv, VectorF(), x, keyInput);
        keySource = valueSource = &keyInput;
    }
    if (!w.downK.empty()) {
        linear(w.downK, VectorF(), x, keyInput);
        keySource = &keyInput;
    }
    if (!w.downV.empty()) {
        linear(w.downV, VectorF(), x, valueInput);
        valueSource = &valueInput;
    }
    if (r < d)
        linear(w.upK, w.upKBias, *keySource, kNope);
    linear(w.upV, w.upVBias, *valueSource, v);
    (void)m;

    const std::int64_t group = c.group();
    q.resize(T, c.qDim());
    for (std::int64_t h = 0; h < c.heads; ++h) {
        const auto& ropeDims = plan.ropeDims[static_cast<std::size_t>(h / group)];
        const auto& nopeDims = plan.nopeDims[static_cast<std::size_t>(h / group)];
        for (std::size_t i = 0; i < ropeDims.size(); ++i)
            q.col(h * d + ropeDims[i]) = qReordered.col(h * r + static_cast<std::int64_t>(i));
        for (std::size_t i = 0; i < nopeDims.size(); ++i)
            q.col(h * d + nopeDims[i]) = qReordered.col(c.heads * r + h * (d - r) + static_cast<std::int64_t>(i));
    }
    k.resize(T, c.kvDim());
    for (std::int64_t kv = 0; kv < c.kvHeads; ++kv) {
        const auto& ropeDims = plan.ropeDims[static_cast<std::size_t>(kv)];
        const auto& nopeDims = plan.nopeDims[static_cast<std::size_t>(kv)];
        for (std::size_t i = 0; i < ropeDims.size(); ++i)
            k.col(kv * d + ropeDims[i]) = kRope.col(kv * r + static_cast<std::int64_t>(i));
        for (std::size_t i = 0; i < nopeDims.size(); ++i)
            k.col(kv * d + nopeDims[i]) = kNope.col(kv * (d - r) + static_cast<std::int64_t>(i));
    }
}

} // namespace

void Transformer::standardAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& lc,
                                    MatrixRM& context, ForwardObserver* observer) const
{
    const ModelConfig& c = m_model.config;
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(layer)];
    const LayerAttentionPlan& plan = m_plans[static_cast<std::size_t>(layer)];
    MatrixRM q, k, v;
    if (plan.latent) {
        expandLatentLayer(c, w, c.mla->layers[static_cast<std::size_t>(layer)], plan, x, q, k, v);
    } else {
        linear(w.q, w.qBias, x, q);
        linear(w.k, w.kBias, x, k);
        linear(w.v, w.vBias, x, v);
    }
    attendProjected(layer, x, p0, lc, std::move(q), std::move(k), v, !plan.latent, context, observer);
}

void Transformer::attendProjected(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& lc, MatrixRM q, MatrixRM k,
                                  const MatrixRM& v, bool plainProjections, MatrixRM& context, ForwardObserver* observer) const
{
    const ModelConfig& c = m_model.config;
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(layer)];
    const LayerAttentionPlan& plan = m_plans[static_cast<std::size_t>(layer)];
    const std::int64_t T = x.rows();
    const std::int64_t d = c.headDim;
    if (plainProjections && c.qkNorm) {
        rmsNormBlocks(q, w.qNorm, static_cast<float>(c.rmsEps), d);
        rmsNormBlocks(k, w.kNorm, static_cast<float>(c.rmsEps), d);
    }
    MatrixRM qPre, kPre;
    if (observer) {
        qPre = q;
        kPre = k;
    }
    rotateHeads(q, d, c.group(), plan.keptPairs, d / 2, plan.ropeFreqs, p0);
    rotateHeads(k, d, 1, plan.keptPairs, d / 2, plan.ropeFreqs, p0);

    lc.keys.store(p0, k);
    lc.values.store(p0, v);

    AttentionShape shape;
    shape.heads = c.heads;
    shape.group = c.group();
    shape.firstPosition = p0;
    shape.tokens = T;
    shape.slidingWindow = c.slidingWindow;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(d));
    const CacheKeyTerm keys{&q, &lc.keys, d, false};
    attendToCache(shape, {&keys, 1}, CacheValueTerm{&lc.values, d, false}, context);

    if (observer) {
        LayerActivations a;
        a.layer = layer;
        a.firstPosition = p0;
        a.attnInput = &x;
        a.queries = &qPre;
        a.keys = &kPre;
        a.values = &v;
        a.attnContext = &context;
        observer->onLayer(a);
    }
}

} // namespace mla
