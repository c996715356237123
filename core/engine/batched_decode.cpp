// A decode step of several sequences at once. Per layer, the norms, o_proj, the MLP and the output head run on all
// rows together with matvecRows (each weight block read from memory once per step instead of once per sequence), and
// so do the q/k/v projections of a layer without a latent; attention, whose cache is each sequence's own, runs the
// single-token code on each row (an MLA layer's projections included), threads over the sequences. Every row
// therefore follows exactly the arithmetic of a single-token forward: batched and one-at-a-time decoding give the
// same logits bit for bit, and a sampler fed either draws the same tokens.
#include "engine/ops.h"
#include "engine/transformer.h"
#include "tensor/kernels.h"
#include "util/error.h"
#include "util/input_integrity.h"
#include "util/parallel_for.h"

#include <algorithm>
#include <exception>

namespace mla {
namespace {

void linearRows(const Tensor& weight, const VectorF& bias, const MatrixRM& x, MatrixRM& y)
{
    matvecRows(weight, x, y);
    addBiasRows(y, bias);
}

// rmsNormRows row by row on a copy: a row inside a larger matrix may start at another alignment than a one-row
// matrix, and Eigen's vectorised sum of squares peels to alignment, so its order (and last bit) could differ.
void rmsNormEachRow(const MatrixRM& x, const VectorF& weight, float eps, MatrixRM& out)
{
    out.resize(x.rows(), x.cols());
    MatrixRM row, normed;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        row = x.row(i);
        rmsNormRows(row, weight, eps, normed);
        out.row(i) = normed.row(0);
    }
}

// One sequence's activations in a batched step, copied into row `row` of the step's matrices (each sequence's
// attention runs on its own thread, so each writes only its own row).
class StepRow final : public ForwardObserver {
public:
    StepRow(MatrixRM& queries, MatrixRM& keys, MatrixRM& values, Eigen::Index row)
        : m_queries(queries), m_keys(keys), m_values(values), m_row(row) {}
    void onLayer(const LayerActivations& a) override
    {
        complete = copyRow(a.queries, m_queries) && copyRow(a.keys, m_keys) && copyRow(a.values, m_values);
    }
    // Whether the last layer showed all three in the original layout (the absorbed MLA form has no expanded queries or
    // values; a DeepSeek model's have other widths).
    bool complete = false;

private:
    bool copyRow(const MatrixRM* from, MatrixRM& to) const
    {
        if (!from || from->cols() != to.cols()) // absent, or not the original layout (a DeepSeek model's widths)
            return false;
        if (from->rows() != 1)
            throw Error("internal: a batched step's activations are not one row per sequence");
        to.row(m_row) = from->row(0);
        return true;
    }
    MatrixRM& m_queries;
    MatrixRM& m_keys;
    MatrixRM& m_values;
    Eigen::Index m_row;
};

} // namespace

MatrixRM Transformer::forwardBatch(std::span<const int> tokens, std::span<KvCache* const> caches, ForwardObserver* observer,
                                   Logits logits) const
{
    const ModelConfig& c = m_model.config;
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    if (caches.size() != tokens.size())
        throw Error("internal: a batched decode step needs one cache per token");
    if (n == 0)
        return MatrixRM();
    for (std::size_t i = 0; i < caches.size(); ++i) {
        if (!caches[i])
            throw Error("internal: a batched decode step without a cache");
        if (caches[i]->length() + 1 > caches[i]->capacity())
            throw Error("context full: " + std::to_string(caches[i]->length() + 1) + " tokens do not fit a cache of "
                        + std::to_string(caches[i]->capacity()));
        for (std::size_t j = 0; j < i; ++j) {
            if (caches[j] == caches[i])
                throw Error("internal: a batched decode step given the same cache twice");
        }
    }

    const float eps = static_cast<float>(c.rmsEps);
    MatrixRM h = embed(tokens);
    MatrixRM xn, context, projected, gate, up;
    std::vector<MatrixRM> rowContext(static_cast<std::size_t>(n));
    // With an observer, each sequence's attention reports its row of these (pre-RoPE queries and keys, values).
    MatrixRM queries, keys, values;
    std::vector<StepRow> rows;
    if (observer) {
        queries.resize(n, c.qDim());
        keys.resize(n, c.kvHeads * c.headDim);
        values.resize(n, c.kvHeads * c.headDim);
        for (std::int64_t i = 0; i < n; ++i)
            rows.emplace_back(queries, keys, values, i);
    }
    MatrixRM allQ, allK, allV;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerWeights& w = m_model.layers[static_cast<std::size_t>(l)];
        rmsNormEachRow(h, w.attnNorm, eps, xn);
        // A plain layer's q/k/v projections for every row at once (per row the single-token product's bits).
        const bool plain = !m_deepseek && !m_plans[static_cast<std::size_t>(l)].latent;
        if (plain) {
            linearRows(w.q, w.qBias, xn, allQ);
            linearRows(w.k, w.kBias, xn, allK);
            linearRows(w.v, w.vBias, xn, allV);
        }
        // One sequence per iteration (each on its own KV cache).
        parallelForEach(n, [&](std::int64_t i) {
            const MatrixRM row = xn.row(i);
            KvCache& cache = *caches[static_cast<std::size_t>(i)];
            MatrixRM& context = rowContext[static_cast<std::size_t>(i)];
            ForwardObserver* rowObserver = observer ? &rows[static_cast<std::size_t>(i)] : nullptr;
            if (plain)
                attendProjected(l, row, cache.length(), cache.layer(l), allQ.row(i), allK.row(i), allV.row(i), true, context, rowObserver);
            else
                attention(l, row, cache.length(), cache.layer(l), context, rowObserver);
        });
        context.resize(n, rowContext.front().cols());
        for (std::int64_t i = 0; i < n; ++i)
            context.row(i) = rowContext[static_cast<std::size_t>(i)].row(0);
        if (observer) {
            const bool complete = std::all_of(rows.begin(), rows.end(), [](const StepRow& r) { return r.complete; });
            LayerActivations a;
            a.layer = l;
            a.firstPosition = -1; // the rows are different sequences' tokens, each at its own position
            a.attnInput = &xn;
            a.queries = complete ? &queries : nullptr;
            a.keys = complete ? &keys : nullptr;
            a.values = complete ? &values : nullptr;
            a.attnContext = &context;
            observer->onLayer(a);
        }
        linearRows(w.o, w.oBias, context, projected);
        h += projected;

        rmsNormEachRow(h, w.ffnNorm, eps, xn);
        linearRows(w.gate, w.gateBias, xn, gate);
        linearRows(w.up, w.upBias, xn, up);
        swiGluInPlace(gate, up);
        linearRows(w.down, w.downBias, gate, projected);
        h += projected;
    }
    checkMappedInputs(); // weights read from a file that shrank meanwhile are zeros: an error, not a result
    for (KvCache* cache : caches)
        cache->setLength(cache->length() + 1);
    if (logits == Logits::None)
        return MatrixRM();
    if (logits == Logits::Last)
        throw Error("internal: a batched step returns every row's logits or none");
    MatrixRM out;
    rmsNormEachRow(h, m_model.outputNorm, eps, xn);
    matvecRows(m_model.output, xn, out);
    return out;
}

} // namespace mla
