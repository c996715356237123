// Absorbed Multi-head Latent Attention: only the latent(s) and the RoPE keys are cached. For head h with KV head k,
// logit(t) = q_rope_h . k_rope_t(k) + (W_uk,k^T q_nope_h) . c_t and out_h = W_uv,k (sum_t a_t c_t) + b_v
// (method document, section 4). The key up-projection bias adds q_nope_h . b_k to every logit of a query, a constant
// the softmax removes, so it is not needed here.
#include "engine/cache_attention.h"
#include "engine/ops.h"
#include "engine/transformer.h"

#include <cmath>
#include <numeric>

namespace mla {

void Transformer::absorbedAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& lc,
                                    MatrixRM& context, ForwardObserver* observer) const
{
    const ModelConfig& c = m_model.config;
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(layer)];
    const LayerAttentionPlan& plan = m_plans[static_cast<std::size_t>(layer)];
    const MlaLayerConfig& m = c.mla->layers[static_cast<std::size_t>(layer)];
    const std::int64_t T = x.rows();
    const std::int64_t d = c.headDim;
    const std::int64_t p = plan.ropePairs;
    const std::int64_t r = 2 * p;
    const std::int64_t nope = d - r;

    MatrixRM qAll;
    linear(w.q, w.qBias, x, qAll);
    MatrixRM qRope = qAll.leftCols(c.heads * r);
    if (r > 0) {
        std::vector<std::vector<int>> blockPairs(static_cast<std::size_t>(c.kvHeads), std::vector<int>(static_cast<std::size_t>(p)));
        for (auto& b : blockPairs)
            std::iota(b.begin(), b.end(), 0);
        MatrixRM kRope;
        linear(w.kRope, w.kRopeBias, x, kRope);
        rotateHeads(qRope, r, c.group(), blockPairs, p, plan.ropeFreqs, p0);
        rotateHeads(kRope, r, 1, blockPairs, p, plan.ropeFreqs, p0);
        lc.ropeKeys.store(p0, kRope);
    }

    MatrixRM part;
    switch (m.method) {
    case LatentMethod::Joint:
        linear(w.downKv, VectorF(), x, part);
        lc.latentK.store(p0, part);
        break;
    case LatentMethod::Split:
        linear(w.downK, VectorF(), x, part);
        lc.latentK.store(p0, part);
        linear(w.downV, VectorF(), x, part);
        lc.latentV.store(p0, part);
        break;
    case LatentMethod::Key:
        linear(w.downK, VectorF(), x, part);
        lc.latentK.store(p0, part);
        linear(w.upV, w.upVBias, x, part);
        lc.values.store(p0, part);
        break;
    case LatentMethod::Value:
        if (nope > 0) {
            linear(w.upK, w.upKBias, x, part);
            lc.keysNope.store(p0, part);
        }
        linear(w.downV, VectorF(), x, part);
        lc.latentV.store(p0, part);
        break;
    case LatentMethod::None:
        if (nope > 0) {
            linear(w.upK, w.upKBias, x, part);
            lc.keysNope.store(p0, part);
        }
        linear(w.upV, w.upVBias, x, part);
        lc.values.store(p0, part);
        break;
    }

    const MatrixRM& upK = m_upK[static_cast<std::size_t>(layer)];
    const MatrixRM& upV = m_upV[static_cast<std::size_t>(layer)];
    const CacheRows& valueLatent = m.method == LatentMethod::Joint ? lc.latentK : lc.latentV;
    const std::int64_t nopeOffset = c.heads * r;

    // The logit terms: each head's RoPE dims against its KV head's cached RoPE keys, and the position-free dims
    // either through the latent (W_uk,h^T q_nope_h against the shared latent) or against cached nope keys.
    std::vector<CacheKeyTerm> terms;
    if (r > 0)
        terms.push_back({&qRope, &lc.ropeKeys, r, false});
    MatrixRM qNope;
    if (nope > 0) {
        if (m.compressesKeys()) {
            const std::int64_t dc = lc.latentK.width();
            qNope.resize(T, c.heads * dc);
            for (std::int64_t h = 0; h < c.heads; ++h)
                qNope.middleCols(h * dc, dc).noalias() =
                    qAll.middleCols(nopeOffset + h * nope, nope) * upK.middleRows((h / c.group()) * nope, nope);
            terms.push_back({&qNope, &lc.latentK, dc, true});
        } else {
            qNope = qAll.middleCols(nopeOffset, c.heads * nope);
            terms.push_back({&qNope, &lc.keysNope, nope, false});
        }
    }

    AttentionShape shape;
    shape.heads = c.heads;
    shape.group = c.group();
    shape.firstPosition = p0;
    shape.tokens = T;
    shape.slidingWindow = c.slidingWindow;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(d));
    if (m.compressesValues()) {
        const std::int64_t dv = valueLatent.width();
        MatrixRM latentContext;
        attendToCache(shape, terms, CacheValueTerm{&valueLatent, dv, true}, latentContext);
        context.resize(T, c.qDim());
        for (std::int64_t h = 0; h < c.heads; ++h) {
            const std::int64_t kv = h / c.group();
            context.middleCols(h * d, d).noalias() = latentContext.middleCols(h * dv, dv) * upV.middleRows(kv * d, d).transpose();
            if (w.upVBias.size())
                context.middleCols(h * d, d).rowwise() += w.upVBias.segment(kv * d, d).transpose();
        }
    } else {
        attendToCache(shape, terms, CacheValueTerm{&lc.values, d, false}, context);
    }

    if (observer) {
        LayerActivations a;
        a.layer = layer;
        a.firstPosition = p0;
        a.attnInput = &x;
        a.attnContext = &context;
        observer->onLayer(a);
    }
}

} // namespace mla
