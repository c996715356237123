// DeepSeek-V2/V3 Multi-head Latent Attention, computed as transformers' DeepseekV3Attention computes it (eager path):
// q = q_proj(x) (or q_b_proj(RMSNorm(q_a_proj(x)))), [c; k_pe] = kv_a_proj_with_mqa(x), [k_nope; v] =
// kv_b_proj(RMSNorm(c)), RoPE on the rope parts (interleaved or half pairs, yarn frequencies and attention factor
// where configured), scores (q_nope.k_nope + q_pe.k_pe) * scale. The absorbed form caches RMSNorm(c) and the rotated
// k_pe and folds kv_b_proj's key rows into the queries and its value rows after the softmax (vLLM's forward_mqa).
#include "engine/attention_math.h"
#include "engine/cache_attention.h"
#include "engine/ops.h"
#include "engine/transformer.h"
#include "model/rope.h"
#include "util/error.h"

#include <cmath>

namespace mla {

struct DeepSeekRuntime {
    std::vector<std::vector<int>> pairIndex;   // one list: the first dim of each pair inside the rope part
    std::int64_t partner = 1;                  // distance to the pair's second dim
    std::vector<std::vector<float>> freqs;     // one list: frequency of each pair
    float ropeFactor = 1.0f;                   // yarn's attention factor on cos and sin
    float scale = 1.0f;                        // softmax scale
    std::vector<MatrixRM> kvB;                 // absorbed form: kv_b_proj per layer in float32
};

std::shared_ptr<const DeepSeekRuntime> makeDeepSeekRuntime(const Model& model, MlaForm form)
{
    const ModelConfig& c = model.config;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    auto rt = std::make_shared<DeepSeekRuntime>();
    const std::int64_t pairs = a.ropeDim / 2;
    std::vector<int> index(static_cast<std::size_t>(pairs));
    for (std::int64_t i = 0; i < pairs; ++i)
        index[static_cast<std::size_t>(i)] = static_cast<int>(a.ropeInterleave ? 2 * i : i);
    rt->pairIndex = {index};
    rt->partner = a.ropeInterleave ? 1 : pairs;
    rt->freqs = {ropeFrequencies(c.rope, a.ropeDim)};
    rt->ropeFactor = static_cast<float>(deepSeekRopeAttentionFactor(c));
    rt->scale = static_cast<float>(deepSeekSoftmaxScale(c));
    if (form == MlaForm::Absorbed) {
        for (const LayerWeights& w : model.layers)
            rt->kvB.push_back(w.kvB.toMatrix());
    }
    return rt;
}

void Transformer::deepSeekAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& lc, MatrixRM& context,
                                    ForwardObserver* observer) const
{
    const ModelConfig& c = m_model.config;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    const DeepSeekRuntime& rt = *m_deepseek;
    const LayerWeights& w = m_model.layers[static_cast<std::size_t>(layer)];
    const std::int64_t T = x.rows(), H = c.heads, N = a.nopeDim, R = a.ropeDim, Q = a.qkHeadDim(), V = a.valueDim;
    const std::int64_t L = a.kvLoraRank;
    const auto eps = static_cast<float>(a.latentNormEps);

    MatrixRM q;
    if (a.qLoraRank > 0) {
        MatrixRM qa, qn;
        linear(w.qA, w.qABias, x, qa);
        rmsNormRows(qa, w.qANorm, eps, qn);
        linear(w.qB, VectorF(), qn, q);
    } else {
        linear(w.q, VectorF(), x, q);
    }
    MatrixRM compressed;
    linear(w.kvA, w.kvABias, x, compressed);
    const MatrixRM latent = compressed.leftCols(L);
    MatrixRM kPe = compressed.rightCols(R);
    MatrixRM latentNormed;
    if (a.latentNorm)
        rmsNormRows(latent, w.kvANorm, eps, latentNormed);
    else
        latentNormed = (latent.array().rowwise() * w.kvANorm.transpose().array()).matrix();

    MatrixRM qPe(T, H * R);
    for (std::int64_t h = 0; h < H; ++h)
        qPe.middleCols(h * R, R) = q.middleCols(h * Q + N, R);
    rotateHeads(qPe, R, H, rt.pairIndex, rt.partner, rt.freqs, p0);
    rotateHeads(kPe, R, 1, rt.pairIndex, rt.partner, rt.freqs, p0);
    if (rt.ropeFactor != 1.0f) {
        qPe *= rt.ropeFactor;
        kPe *= rt.ropeFactor;
    }

    AttentionShape shape;
    shape.heads = H;
    shape.firstPosition = p0;
    shape.tokens = T;
    shape.scale = rt.scale;

    if (m_form == MlaForm::Expanded) {
        MatrixRM kv;
        linear(w.kvB, VectorF(), latentNormed, kv);
        MatrixRM keys(T, H * Q), values(T, H * V), queries(T, H * Q);
        for (std::int64_t h = 0; h < H; ++h) {
            keys.middleCols(h * Q, N) = kv.middleCols(h * (N + V), N);
            keys.middleCols(h * Q + N, R) = kPe;
            values.middleCols(h * V, V) = kv.middleCols(h * (N + V) + N, V);
            queries.middleCols(h * Q, N) = q.middleCols(h * Q, N);
            queries.middleCols(h * Q + N, R) = qPe.middleCols(h * R, R);
        }
        lc.keys.store(p0, keys);
        lc.values.store(p0, values);
        shape.group = 1;
        const CacheKeyTerm term{&queries, &lc.keys, Q, false};
        attendToCache(shape, {&term, 1}, CacheValueTerm{&lc.values, V, false}, context);
    } else {
        lc.latentK.store(p0, latentNormed);
        lc.ropeKeys.store(p0, kPe);
        const MatrixRM& kvB = rt.kvB[static_cast<std::size_t>(layer)];
        // Every head reads the one cached latent and the one rotated key head: kv_b_proj's key rows fold into the
        // queries (W_uk,h^T q_nope,h), its value rows apply to each head's weighted latent after the softmax.
        shape.group = H;
        std::vector<CacheKeyTerm> terms;
        terms.push_back({&qPe, &lc.ropeKeys, R, true});
        MatrixRM qLatent;
        if (N > 0) {
            qLatent.resize(T, H * L);
            for (std::int64_t h = 0; h < H; ++h)
                qLatent.middleCols(h * L, L).noalias() = q.middleCols(h * Q, N) * kvB.middleRows(h * (N + V), N);
            terms.push_back({&qLatent, &lc.latentK, L, true});
        }
        MatrixRM latentContext;
        attendToCache(shape, terms, CacheValueTerm{&lc.latentK, L, true}, latentContext);
        context.resize(T, H * V);
        for (std::int64_t h = 0; h < H; ++h)
            context.middleCols(h * V, V).noalias() = latentContext.middleCols(h * L, L) * kvB.middleRows(h * (N + V) + N, V).transpose();
    }

    if (observer) {
        LayerActivations act;
        act.layer = layer;
        act.firstPosition = p0;
        act.attnInput = &x;
        act.attnContext = &context;
        observer->onLayer(act);
    }
}

} // namespace mla
