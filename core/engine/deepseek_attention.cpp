// DeepSeek-V2/V3 Multi-head Latent Attention, computed as transformers' DeepseekV3Attention computes it (eager path):
// q = q_proj(x) (or q_b_proj(RMSNorm(q_a_proj(x)))), [c; k_pe] = kv_a_proj_with_mqa(x), [k_nope; v] =
// kv_b_proj(RMSNorm(c)), RoPE on the rope parts (interleaved or half pairs, yarn frequencies and attention factor
// where configured), scores (q_nope.k_nope + q_pe.k_pe) * scale. The absorbed form caches RMSNorm(c) and the rotated
// k_pe and folds kv_b_proj's key rows into the queries and its value rows after the softmax (vLLM's forward_mqa).
#include "engine/attention_math.h"
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

LayerCache makeDeepSeekLayerCache(const ModelConfig& config, std::int64_t capacity, MlaForm form)
{
    const DeepSeekAttentionConfig& a = *config.deepseek;
    LayerCache cache;
    if (form == MlaForm::Expanded) {
        cache.keys.resize(capacity, config.heads * a.qkHeadDim());
        cache.values.resize(capacity, config.heads * a.valueDim);
    } else {
        cache.latentK.resize(capacity, a.kvLoraRank);
        cache.ropeKeys.resize(capacity, a.ropeDim);
    }
    return cache;
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
    shape.group = H;
    shape.firstPosition = p0;
    shape.tokens = T;
    shape.scale = rt.scale;
    const std::int64_t n = p0 + T;
    context.resize(T, H * V);

    if (m_form == MlaForm::Expanded) {
        MatrixRM kv;
        linear(w.kvB, VectorF(), latentNormed, kv);
        for (std::int64_t h = 0; h < H; ++h) {
            lc.keys.block(p0, h * Q, T, N) = kv.middleCols(h * (N + V), N);
            lc.keys.block(p0, h * Q + N, T, R) = kPe;
            lc.values.block(p0, h * V, T, V) = kv.middleCols(h * (N + V) + N, V);
        }
#pragma omp parallel for schedule(dynamic) if (H > 1 && n * T > 64)
        for (std::int64_t h = 0; h < H; ++h) {
            MatrixRM query(T, Q);
            query.leftCols(N) = q.middleCols(h * Q, N);
            query.rightCols(R) = qPe.middleCols(h * R, R);
            MatrixRM scores;
            scores.noalias() = query * lc.keys.block(0, h * Q, n, Q).transpose();
            maskedSoftmax(scores, shape);
            context.middleCols(h * V, V).noalias() = scores * lc.values.block(0, h * V, n, V);
        }
    } else {
        lc.latentK.middleRows(p0, T) = latentNormed;
        lc.ropeKeys.middleRows(p0, T) = kPe;
        const MatrixRM& kvB = rt.kvB[static_cast<std::size_t>(layer)];
#pragma omp parallel for schedule(dynamic) if (H > 1 && n * T > 64)
        for (std::int64_t h = 0; h < H; ++h) {
            MatrixRM scores = MatrixRM::Zero(T, n);
            if (N > 0) {
                const MatrixRM qLatent = q.middleCols(h * Q, N) * kvB.middleRows(h * (N + V), N);
                scores.noalias() += qLatent * lc.latentK.topRows(n).transpose();
            }
            scores.noalias() += qPe.middleCols(h * R, R) * lc.ropeKeys.topRows(n).transpose();
            maskedSoftmax(scores, shape);
            const MatrixRM latentContext = scores * lc.latentK.topRows(n);
            context.middleCols(h * V, V).noalias() = latentContext * kvB.middleRows(h * (N + V) + N, V).transpose();
        }
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
