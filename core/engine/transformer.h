#pragma once

#include "engine/attention_plan.h"
#include "engine/kv_cache.h"
#include "model/model.h"

#include <memory>
#include <span>
#include <vector>

namespace mla {

struct DeepSeekRuntime; // engine/deepseek_attention.cpp

// What a layer saw and produced in one forward call, for observers (calibration, analysis, refits). References are
// valid only during the callback.
struct LayerActivations {
    std::int64_t layer = 0;
    std::int64_t firstPosition = 0;
    const MatrixRM* attnInput = nullptr; // normalised hidden states entering attention, [T, hidden]
    const MatrixRM* queries = nullptr;   // pre-RoPE queries after bias (and q_norm), original head order; null in absorbed MLA
    const MatrixRM* keys = nullptr;      // pre-RoPE keys likewise, [T, kvHeads*headDim]
    const MatrixRM* values = nullptr;    // values [T, kvHeads*headDim]; null in absorbed MLA
    const MatrixRM* attnContext = nullptr; // attention output before o_proj, [T, heads*headDim]
};

class ForwardObserver {
public:
    virtual ~ForwardObserver() = default;
    virtual void onLayer(const LayerActivations& activations) = 0;
};

enum class Logits { None, Last, All };

// The Llama-family forward pass on the CPU, for original models and converted (MLA) ones.
class Transformer {
public:
    // `cacheFormat`: how newCache stores keys, values, latents and RoPE keys (float32 unless given). Layer-wise
    // passes (runLayer, attentionContext) always cache float32: they feed calibration and refits.
    explicit Transformer(Model model, MlaForm form = MlaForm::Absorbed, const KvCacheFormat& cacheFormat = {});

    const Model& model() const { return m_model; }
    const ModelConfig& config() const { return m_model.config; }
    MlaForm form() const { return m_form; }
    const KvCacheFormat& cacheFormat() const { return m_cacheFormat; }
    // The same model (weights shared) with another cache format.
    Transformer withCacheFormat(const KvCacheFormat& format) const;
    const std::vector<LayerAttentionPlan>& plans() const { return m_plans; }

    KvCache newCache(std::int64_t capacity) const;

    // Runs `tokens` at positions cache.length() onwards, appending to the cache, and returns the logits asked for
    // ([T, vocab], [1, vocab] or empty). `lastLayer` stops after that layer (inclusive) when >= 0.
    MatrixRM forward(std::span<const int> tokens, KvCache& cache, Logits logits = Logits::Last,
                     ForwardObserver* observer = nullptr, std::int64_t lastLayer = -1) const;

    // One decode step of several independent sequences as one batch (sampled calibration, batched generation):
    // tokens[i] is appended to *caches[i] (distinct caches of this model) at its position caches[i]->length(). Every
    // weight multiplies all rows in one pass (matvecRows) and attention reads each sequence's own cache, so row i of
    // the result [n, vocab] is bit-identical to forward({tokens[i]}, *caches[i]) run alone, whatever the batch.
    // `observer` sees each layer's activations of all n rows at once (row i: tokens[i], so firstPosition is -1: the
    // rows sit at their own sequences' positions), each row bit-identical to what a single-token forward shows (queries,
    // keys and values only in the original layout: null for the absorbed MLA form and DeepSeek models); with
    // Logits::None the output head is skipped (a step run only to be observed).
    MatrixRM forwardBatch(std::span<const int> tokens, std::span<KvCache* const> caches, ForwardObserver* observer = nullptr,
                          Logits logits = Logits::All) const;

    // Layer-wise execution, for jobs that hold every calibration sequence's hidden states for one layer at a time
    // (calibration, analysis, layer-by-layer refits): the token embeddings of a sequence, one decoder layer applied
    // to a whole sequence [T, hidden] in place (positions 0..T-1, causal), and the final norm + output head.
    MatrixRM embed(std::span<const int> tokens) const;
    void runLayer(std::int64_t layer, MatrixRM& hidden, ForwardObserver* observer = nullptr) const;
    // The attention context (before o_proj, [T, heads*headDim]) of one layer for a whole sequence of already
    // normalised inputs [T, hidden], positions 0..T-1.
    MatrixRM attentionContext(std::int64_t layer, const MatrixRM& normedInput, ForwardObserver* observer = nullptr) const;
    // The rest of runLayer once the layer's attention output (o_proj applied, [T, hidden]) is known: the residual add
    // and the feed-forward block. For layer-wise jobs that computed that output already (allocation, refits): the
    // same operations as runLayer, so the same bits, without running attention twice.
    void finishLayer(std::int64_t layer, MatrixRM& hidden, const MatrixRM& attentionOutput) const;
    MatrixRM logitsFromHidden(const MatrixRM& hidden) const;

private:
    void layerForward(std::int64_t layer, MatrixRM& hidden, std::int64_t firstPosition, LayerCache& cache,
                      ForwardObserver* observer) const;
    void attention(std::int64_t layer, const MatrixRM& x, std::int64_t firstPosition, LayerCache& cache, MatrixRM& context,
                   ForwardObserver* observer) const;
    void standardAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& cache, MatrixRM& context,
                           ForwardObserver* observer) const;
    // The rest of standardAttention once x's pre-RoPE queries, keys and values are made (by the layer's own q/k/v
    // projections when `plainProjections`, then q/k norms apply; else rebuilt from an MLA layer's latent): RoPE, the
    // cache, the attention itself. forwardBatch makes a plain layer's projections for all its rows at once.
    void attendProjected(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& cache, MatrixRM q, MatrixRM k,
                         const MatrixRM& v, bool plainProjections, MatrixRM& context, ForwardObserver* observer) const;
    void absorbedAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& cache, MatrixRM& context,
                           ForwardObserver* observer) const;
    // DeepSeek-V2/V3 attention (config.deepseek), expanded or absorbed by m_form.
    void deepSeekAttention(std::int64_t layer, const MatrixRM& x, std::int64_t p0, LayerCache& cache, MatrixRM& context,
                           ForwardObserver* observer) const;

    Model m_model; // a copy: tensors are shared views, so this is cheap and a Transformer never dangles
    MlaForm m_form;
    KvCacheFormat m_cacheFormat;
    std::vector<LayerAttentionPlan> m_plans;
    // Absorbed MLA: the up projections as float32, used per head on the latent.
    std::vector<MatrixRM> m_upK;
    std::vector<MatrixRM> m_upV;
    std::shared_ptr<const DeepSeekRuntime> m_deepseek; // rope tables and absorbed kv_b_proj of a DeepSeek model
};

// Attention of every head over the cached keys and values: scores, causal (and sliding-window) mask, softmax,
// weighted sum. `keyParts` / `queryParts` are column blocks whose products add into the scores.
struct AttentionShape {
    std::int64_t heads = 0;
    std::int64_t group = 1;          // query heads per KV head
    std::int64_t firstPosition = 0;  // position of the first query row
    std::int64_t tokens = 0;         // query rows
    std::int64_t slidingWindow = 0;  // 0 = unlimited
    float scale = 1.0f;
};

// Rotates the kept pairs of every head in rows of `x` (head-major blocks of `headWidth`), row i at position p0 + i.
// `pairIndex` lists, per KV head, the offsets j of the pairs inside the block and `halfOffset` the distance to each
// pair's partner; query heads use their KV head's list.
void rotateHeads(MatrixRM& x, std::int64_t headWidth, std::int64_t group, const std::vector<std::vector<int>>& pairIndex,
                 std::int64_t halfOffset, const std::vector<std::vector<float>>& freqs, std::int64_t p0);

} // namespace mla
