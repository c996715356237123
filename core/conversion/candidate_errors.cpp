#include "conversion/candidate_errors.h"

#include "analysis/rope_selection.h"
#include "engine/attention_plan.h"
#include "model/rope.h"
#include "numerics/dense_kernels.h"
#include "numerics/random_fill.h"
#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace mla {
namespace {

// Below this many multiply-adds the candidates of one pair count are measured on one thread (tiny models: the
// threads' start and barriers would cost more than the work).
constexpr std::int64_t kParallelWork = std::int64_t(1) << 24;

// Query rows of a sequence are split into this many blocks, each multiplied only with the keys it sees.
constexpr std::int64_t kRowBlocks = 4;

// exp(x) for x <= 0 in float, written so that the compiler vectorises the loop that calls it (the scalar expf was
// 8.5% of the best preset's profile): 2^n * p(r) with r = x - n ln2 in [-ln2/2, ln2/2] and a degree-6 polynomial,
// relative error about 2e-7 (within float rounding of std::exp).
inline float expNonPositive(float x)
{
    // x = max(x, -87) on the bits (for x <= 0 a larger magnitude is a larger unsigned pattern): a float compare
    // would keep the loop below from vectorising (it may trap), an integer one does not.
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    constexpr std::uint32_t kMinus87 = 0xC2AE0000u; // -87.0f
    u = u > kMinus87 ? kMinus87 : u;
    std::memcpy(&x, &u, sizeof u);
    // Round to nearest even by adding and removing 1.5 * 2^23 (|x| * log2(e) < 2^22): what std::nearbyint does in
    // the default rounding mode, without its library call, so the softmax loop below vectorises.
    constexpr float kRound = 12582912.0f;
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    std::int32_t bits;
    std::memcpy(&bits, &p, sizeof bits);
    bits += static_cast<std::int32_t>(n) << 23;
    std::memcpy(&p, &bits, sizeof bits);
    return p;
}

// Softmax of row[0, count) in place with scaling; entries from count on are left alone (the caller multiplies
// only the first count columns).
void softmaxPrefix(float* row, std::int64_t begin, std::int64_t count, float scale)
{
    float maxValue = -std::numeric_limits<float>::infinity();
    for (std::int64_t j = begin; j < count; ++j)
        maxValue = std::max(maxValue, row[j]);
    const float shift = maxValue * scale;
    // The exponentials in one loop (vectorised), their sum in order in another (a float sum is not reordered).
    for (std::int64_t j = begin; j < count; ++j)
        row[j] = expNonPositive(row[j] * scale - shift);
    float sum = 0.0f;
    for (std::int64_t j = begin; j < count; ++j)
        sum += row[j];
    const float inv = 1.0f / sum;
    for (std::int64_t j = 0; j < begin; ++j)
        row[j] = 0.0f;
    for (std::int64_t j = begin; j < count; ++j)
        row[j] *= inv;
}

MatrixRM gatherColumns(const MatrixRM& m, const std::vector<std::int64_t>& cols, std::int64_t offset)
{
    MatrixRM out(m.rows(), static_cast<Eigen::Index>(cols.size()));
    for (std::size_t i = 0; i < cols.size(); ++i)
        out.col(static_cast<Eigen::Index>(i)) = m.col(offset + cols[i]);
    return out;
}

} // namespace

void rotateAllPairs(MatrixRM& x, std::int64_t headDim, const std::vector<float>& freqs, const std::vector<std::int64_t>& positions)
{
    const std::int64_t heads = x.cols() / headDim;
    const std::int64_t half = headDim / 2;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const std::int64_t position = positions[static_cast<std::size_t>(t)];
        for (std::int64_t i = 0; i < half; ++i) {
            // As rotateHeads: the angle in float from the float frequency.
            const float angle = static_cast<float>(position) * freqs[static_cast<std::size_t>(i)];
            const float cs = std::cos(angle);
            const float sn = std::sin(angle);
            for (std::int64_t h = 0; h < heads; ++h) {
                float& a = x(t, h * headDim + i);
                float& b = x(t, h * headDim + i + half);
                const float a0 = a;
                a = a0 * cs - b * sn;
                b = a0 * sn + b * cs;
            }
        }
    }
}

LayerCandidateErrors::LayerCandidateErrors(const ModelConfig& c, const LayerWeights& w, const std::vector<MatrixRM>& x,
                                           const std::vector<MatrixRM>& target, const CandidateErrorOptions& options)
    : m_config(c), m_layer(w), m_x(x)
{
    if (x.size() != target.size())
        throw Error("internal: candidate errors need one target per sequence");
    for (const auto& s : x)
        m_totalRows += s.rows();
    // The sequences evaluated, spread evenly, and their tokens: the query rows are spread over those.
    const std::vector<bool> evaluated = evaluatedSequences(x.size(), options);
    std::int64_t evaluatedTokens = 0;
    for (std::size_t s = 0; s < x.size(); ++s) {
        if (evaluated[s])
            evaluatedTokens += x[s].rows();
    }
    const std::int64_t wanted = options.queryRows > 0 ? std::min(options.queryRows, evaluatedTokens) : evaluatedTokens;
    const std::vector<float> freqs = ropeFrequencies(c.rope, c.headDim);

    // The output error through W_o (exact) or through W_o G with G a fixed Gaussian sketch.
    const MatrixRM wo = w.o.toMatrix(); // [hidden, qDim]
    MatrixRM sketch;
    const bool sketched = options.sketch > 0 && options.sketch < c.hidden; // else exact costs no more
    if (sketched) {
        sketch.resize(wo.rows(), options.sketch);
        SplitMix64 random(options.seed, 21);
        const double sd = 1.0 / std::sqrt(static_cast<double>(options.sketch));
        for (Eigen::Index i = 0; i < sketch.size(); ++i)
            sketch.data()[i] = static_cast<float>(random.gaussian() * sd);
    }
    const MatrixRM woSketched = sketched ? MatrixRM(wo.transpose() * sketch) : MatrixRM(wo.transpose()); // [qDim, m]
    for (std::int64_t h = 0; h < c.heads; ++h)
        m_outputPerHead.push_back(woSketched.middleRows(h * c.headDim, c.headDim));
    if (w.oBias.size() > 0)
        m_outputBias = sketched ? VectorF(sketch.transpose() * w.oBias) : w.oBias;

    const MatrixRM wq = w.q.toMatrix(), wk = w.k.toMatrix();
    std::int64_t seen = 0;
    for (std::size_t s = 0; s < x.size(); ++s) {
        Sequence q;
        if (!evaluated[s]) {
            m_sequences.push_back(std::move(q)); // no rows: skipped
            continue;
        }
        const std::int64_t T = x[s].rows();
        // Rows spread evenly over the evaluated sequences' concatenated tokens: row j is taken when
        // floor((j+1) R / N) steps.
        for (std::int64_t i = 0; i < T; ++i) {
            const std::int64_t j = seen + i;
            if (((j + 1) * wanted) / evaluatedTokens > (j * wanted) / evaluatedTokens)
                q.rows.push_back(i);
        }
        seen += T;
        const auto R = static_cast<Eigen::Index>(q.rows.size());
        MatrixRM xr(R, c.hidden), tr(R, target[s].cols());
        for (Eigen::Index i = 0; i < R; ++i) {
            xr.row(i) = x[s].row(q.rows[static_cast<std::size_t>(i)]);
            tr.row(i) = target[s].row(q.rows[static_cast<std::size_t>(i)]);
        }
        q.query.noalias() = xr * wq.transpose();
        if (w.qBias.size() > 0)
            q.query.rowwise() += w.qBias.transpose();
        q.queryRotated = q.query;
        rotateAllPairs(q.queryRotated, c.headDim, freqs, q.rows);
        q.keyRotated.noalias() = x[s] * wk.transpose();
        if (w.kBias.size() > 0)
            q.keyRotated.rowwise() += w.kBias.transpose();
        std::vector<std::int64_t> positions(static_cast<std::size_t>(T));
        for (std::int64_t i = 0; i < T; ++i)
            positions[static_cast<std::size_t>(i)] = i;
        rotateAllPairs(q.keyRotated, c.headDim, freqs, positions);
        q.target = sketched ? MatrixRM(tr * sketch) : tr;
        m_evaluatedRows += R;
        m_sequences.push_back(std::move(q));
    }
}

std::vector<bool> LayerCandidateErrors::evaluatedSequences(std::size_t sequences, const CandidateErrorOptions& options)
{
    const auto n = static_cast<std::int64_t>(sequences);
    const std::int64_t chosen = options.sequences > 0 ? std::min(options.sequences, n) : n;
    std::vector<bool> evaluated(sequences, false);
    for (std::int64_t s = 0; s < n; ++s)
        evaluated[static_cast<std::size_t>(s)] = ((s + 1) * chosen) / n > (s * chosen) / n;
    return evaluated;
}

std::vector<double> LayerCandidateErrors::errors(const ConvertedAttention& a, const LayerPairSelection& kept,
                                                 const std::vector<std::int64_t>& widths) const
{
    const ModelConfig& c = m_config;
    const std::int64_t K = static_cast<std::int64_t>(widths.size());
    std::vector<double> total(static_cast<std::size_t>(K), 0.0);
    if (K == 0)
        return total;
    const std::int64_t dmax = widths.back();
    if (!std::is_sorted(widths.begin(), widths.end()) || widths.front() < 1 || dmax > a.downKv.rows())
        throw Error("internal: candidate widths out of range");
    const std::int64_t d = c.headDim, group = c.group();
    const std::int64_t p = static_cast<std::int64_t>(kept.front().size());
    const std::int64_t r = 2 * p, dn = d - r;
    const std::int64_t m = m_outputPerHead.front().cols();
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    const MatrixRM down = a.downKv.topRows(dmax);

    // Per KV head: which head dims keep RoPE and which are position-free; per query head, the values multiplied
    // through its W_o columns: B_h = upV_g^T W_o,h (dmax x m) and its bias.
    std::vector<std::vector<std::int64_t>> ropeDims(static_cast<std::size_t>(c.kvHeads)), nopeDims(static_cast<std::size_t>(c.kvHeads));
    for (std::int64_t g = 0; g < c.kvHeads; ++g) {
        ropeDims[static_cast<std::size_t>(g)] = ropeBlockDims(kept[static_cast<std::size_t>(g)], d);
        nopeDims[static_cast<std::size_t>(g)] = nopeBlockDims(kept[static_cast<std::size_t>(g)], d);
    }
    std::vector<MatrixRM> valueOut(static_cast<std::size_t>(c.heads));
    std::vector<VectorF> valueOutBias(static_cast<std::size_t>(c.heads));
    std::vector<MatrixRM> upKey(static_cast<std::size_t>(c.kvHeads));
    for (std::int64_t h = 0; h < c.heads; ++h) {
        const std::int64_t g = h / group;
        const auto upV = a.upV.block(g * d, 0, d, dmax);
        valueOut[static_cast<std::size_t>(h)].noalias() = upV.transpose() * m_outputPerHead[static_cast<std::size_t>(h)];
        if (a.upVBias.size() > 0)
            valueOutBias[static_cast<std::size_t>(h)] = m_outputPerHead[static_cast<std::size_t>(h)].transpose() * a.upVBias.segment(g * d, d);
    }
    for (std::int64_t g = 0; g < c.kvHeads && dn > 0; ++g)
        upKey[static_cast<std::size_t>(g)] = a.upK.block(g * dn, 0, dn, dmax);

    const auto S = static_cast<std::int64_t>(m_sequences.size());
    std::vector<std::vector<double>> perSequence(static_cast<std::size_t>(S), std::vector<double>(static_cast<std::size_t>(K), 0.0));
    // Threads over sequences: each sequence's products are small, and one thread per sequence avoids the
    // barriers of threading inside them. The sums are added in sequence order afterwards (deterministic).
    std::int64_t keys = 0;
    for (const auto& x : m_x)
        keys = std::max<std::int64_t>(keys, x.rows());
    const bool parallel = m_evaluatedRows * keys * c.heads * (m + dmax) * K > kParallelWork;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (std::int64_t s = 0; s < S; ++s) {
        const Sequence& q = m_sequences[static_cast<std::size_t>(s)];
        const auto R = static_cast<Eigen::Index>(q.rows.size());
        if (R == 0)
            continue;
        const std::int64_t last = q.rows.back() + 1; // keys any evaluated row sees
        MatrixRM latent(last, dmax);
        productRowMajor(latent, m_x[static_cast<std::size_t>(s)].topRows(last), Op::None, down, Op::Transpose, 0.0f);
        std::vector<MatrixRM> scores(static_cast<std::size_t>(c.heads)), queryLatent(static_cast<std::size_t>(c.heads));
        std::vector<MatrixRM> values(static_cast<std::size_t>(c.heads));
        for (std::int64_t h = 0; h < c.heads; ++h) {
            const std::int64_t g = h / group;
            const auto& rd = ropeDims[static_cast<std::size_t>(g)];
            MatrixRM& sc = scores[static_cast<std::size_t>(h)];
            if (r > 0) {
                const MatrixRM qr = gatherColumns(q.queryRotated, rd, h * d);
                const MatrixRM kr = gatherColumns(q.keyRotated.topRows(last), rd, g * d);
                sc.resize(R, last);
                productRowMajor(sc, qr, Op::None, kr, Op::Transpose, 0.0f);
            } else {
                sc = MatrixRM::Zero(R, last);
            }
            if (dn > 0) {
                const MatrixRM qn = gatherColumns(q.query, nopeDims[static_cast<std::size_t>(g)], h * d);
                MatrixRM& ql = queryLatent[static_cast<std::size_t>(h)];
                ql.resize(R, dmax);
                productRowMajor(ql, qn, Op::None, upKey[static_cast<std::size_t>(g)], Op::None, 0.0f);
            }
            values[static_cast<std::size_t>(h)] = MatrixRM::Zero(last, m);
            if (valueOutBias[static_cast<std::size_t>(h)].size() > 0)
                values[static_cast<std::size_t>(h)].rowwise() += valueOutBias[static_cast<std::size_t>(h)].transpose();
        }
        MatrixRM out(R, m), probabilities(R, last);
        // Row blocks (first row, rows, keys seen): about kRowBlocks of them.
        struct Block {
            std::int64_t first, rows, keys;
        };
        std::vector<Block> blocks;
        const std::int64_t blockRows = std::max<std::int64_t>(8, (R + kRowBlocks - 1) / kRowBlocks);
        for (std::int64_t i0 = 0; i0 < R; i0 += blockRows) {
            const std::int64_t n = std::min<std::int64_t>(blockRows, R - i0);
            blocks.push_back({i0, n, q.rows[static_cast<std::size_t>(i0 + n - 1)] + 1});
        }
        std::int64_t previous = 0;
        for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t width = widths[static_cast<std::size_t>(k)];
            const std::int64_t step = width - previous;
            out.setZero();
            if (m_outputBias.size() > 0)
                out.rowwise() += m_outputBias.transpose();
            for (std::int64_t h = 0; h < c.heads; ++h) {
                MatrixRM& sc = scores[static_cast<std::size_t>(h)];
                MatrixRM& value = values[static_cast<std::size_t>(h)];
                if (step > 0)
                    productRowMajor(value, latent.middleCols(previous, step), Op::None, valueOut[static_cast<std::size_t>(h)].middleRows(previous, step), Op::None, 1.0f);
                // Causal: a block of rows sees only the keys up to its last row, so the products stop there.
                for (const Block& b : blocks) {
                    const std::int64_t i0 = b.first, rowsInBlock = b.rows, keys = b.keys;
                    if (step > 0 && dn > 0)
                        productRowMajor(sc.block(i0, 0, rowsInBlock, keys), queryLatent[static_cast<std::size_t>(h)].block(i0, previous, rowsInBlock, step),
                                Op::None, latent.block(0, previous, keys, step), Op::Transpose, 1.0f);
                    probabilities.block(i0, 0, rowsInBlock, keys) = sc.block(i0, 0, rowsInBlock, keys);
                    for (std::int64_t i = i0; i < i0 + rowsInBlock; ++i) {
                        const std::int64_t position = q.rows[static_cast<std::size_t>(i)];
                        const std::int64_t first = c.slidingWindow > 0 ? std::max<std::int64_t>(0, position + 1 - c.slidingWindow) : 0;
                        float* row = probabilities.row(i).data();
                        softmaxPrefix(row, first, position + 1, scale);
                        std::fill(row + position + 1, row + keys, 0.0f);
                    }
                    productRowMajor(out.middleRows(i0, rowsInBlock), probabilities.block(i0, 0, rowsInBlock, keys), Op::None, value.topRows(keys), Op::None, 1.0f);
                }
            }
            perSequence[static_cast<std::size_t>(s)][static_cast<std::size_t>(k)] = (out - q.target).cast<double>().squaredNorm();
            previous = width;
        }
    }
    for (std::int64_t s = 0; s < S; ++s) {
        for (std::int64_t k = 0; k < K; ++k)
            total[static_cast<std::size_t>(k)] += perSequence[static_cast<std::size_t>(s)][static_cast<std::size_t>(k)];
    }
    const double toAll = static_cast<double>(m_totalRows) / static_cast<double>(std::max<std::int64_t>(m_evaluatedRows, 1));
    for (double& e : total)
        e *= toAll;
    return total;
}

} // namespace mla
