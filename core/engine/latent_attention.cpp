// Absorbed Multi-head Latent Attention: only the latent(s) and the RoPE keys are cached. For head h with KV head k,
// logit(t) = q_rope_h . k_rope_t(k) + (W_uk,k^T q_nope_h) . c_t and out_h = W_uv,k (sum_t a_t c_t) + b_v
// (method document, section 4). The key up-projection bias adds q_nope_h . b_k to every logit of a query, a constant
// the softmax removes, so it is not needed here.
#include "engine/attention_math.h"
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
        lc.ropeKeys.middleRows(p0, T) = kRope;
    }

    MatrixRM part;
    switch (m.method) {
    case LatentMethod::Joint:
        linear(w.downKv, VectorF(), x, part);
        lc.latentK.middleRows(p0, T) = part;
        break;
    case LatentMethod::Split:
        linear(w.downK, VectorF(), x, part);
        lc.latentK.middleRows(p0, T) = part;
        linear(w.downV, VectorF(), x, part);
        lc.latentV.middleRows(p0, T) = part;
        break;
    case LatentMethod::Key:
        linear(w.downK, VectorF(), x, part);
        lc.latentK.middleRows(p0, T) = part;
        linear(w.upV, w.upVBias, x, part);
        lc.values.middleRows(p0, T) = part;
        break;
    case LatentMethod::Value:
        if (nope > 0) {
            linear(w.upK, w.upKBias, x, part);
            lc.keysNope.middleRows(p0, T) = part;
        }
        linear(w.downV, VectorF(), x, part);
        lc.latentV.middleRows(p0, T) = part;
        break;
    case LatentMethod::None:
        if (nope > 0) {
            linear(w.upK, w.upKBias, x, part);
            lc.keysNope.middleRows(p0, T) = part;
        }
        linear(w.upV, w.upVBias, x, part);
        lc.values.middleRows(p0, T) = part;
        break;
    }

    const std::int64_t n = p0 + T;
    const MatrixRM& upK = m_upK[static_cast<std::size_t>(layer)];
    const MatrixRM& upV = m_upV[static_cast<std::size_t>(layer)];
    const MatrixRM& valueLatent = m.method == LatentMethod::Joint ? lc.latentK : lc.latentV;
    const std::int64_t nopeOffset = c.heads * r;

    AttentionShape shape;
    shape.heads = c.heads;
    shape.group = c.group();
    shape.firstPosition = p0;
    shape.tokens = T;
    shape.slidingWindow = c.slidingWindow;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(d));
    context.resize(T, c.qDim());
#pragma omp parallel for schedule(dynamic) if (c.heads > 1 && n * T > 64)
    for (std::int64_t h = 0; h < c.heads; ++h) {
        const std::int64_t kv = h / c.group();
        MatrixRM scores = MatrixRM::Zero(T, n);
        if (r > 0)
            scores.noalias() += qRope.middleCols(h * r, r) * lc.ropeKeys.block(0, kv * r, n, r).transpose();
        if (nope > 0) {
            const auto qNope = qAll.middleCols(nopeOffset + h * nope, nope);
            if (m.compressesKeys()) {
                const MatrixRM qLatent = qNope * upK.middleRows(kv * nope, nope);
                scores.noalias() += qLatent * lc.latentK.topRows(n).transpose();
            } else {
                scores.noalias() += qNope * lc.keysNope.block(0, kv * nope, n, nope).transpose();
            }
        }
        maskedSoftmax(scores, shape);
        if (m.compressesValues()) {
            const MatrixRM latentContext = scores * valueLatent.topRows(n);
            context.middleCols(h * d, d).noalias() = latentContext * upV.middleRows(kv * d, d).transpose();
            if (w.upVBias.size())
                context.middleCols(h * d, d).rowwise() += w.upVBias.segment(kv * d, d).transpose();
        } else {
            context.middleCols(h * d, d).noalias() = scores * lc.values.block(0, kv * d, n, d);
        }
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
