// The converted block's forward and backward (heal_block.h). Notation: N stacked tokens, d hidden, H query heads,
// KV key/value heads, g = H / KV, dh head size, p kept pairs, r = 2p rotated dims, nope = dh - r.
//
// Inside a head, queries and keys are handled in the MHA2MLA block order [rotated block (r) | position-free (nope)]
// instead of the original dim order: both sides of every dot product are permuted alike, so the scores are those of
// the engine's expanded form, and no gather is needed. Inside the rotated block, pair i is (i, i + p).
#include "heal/heal_block.h"

#include "engine/attention_plan.h"
#include "heal/fixed_order_products.h"
#include "util/error.h"

#include <cmath>
#include <limits>

namespace mla::heal {
namespace {

using Index = Eigen::Index;
template <typename S>
using Col = Eigen::Matrix<S, Eigen::Dynamic, 1>;

constexpr std::array<std::string_view, kBlockTensorCount> kNames = {
    "q_proj", "q_proj.bias", "k_r_proj", "k_r_proj.bias", "kv_proj.down_kv", "kv_proj.down_k", "kv_proj.down_v",
    "kv_proj.up_k", "kv_proj.up_k.bias", "kv_proj.up_v", "kv_proj.up_v.bias", "o_proj", "o_proj.bias",
    "input_layernorm", "post_attention_layernorm"};

MatrixRM rowOf(const VectorF& v)
{
    return v.size() ? MatrixRM(v.transpose()) : MatrixRM();
}

MatrixRM matrixOf(const Tensor& t)
{
    return t.empty() ? MatrixRM() : t.toMatrix();
}

} // namespace

// Named, not anonymous, because BlockWorkspace<S>::Buffers (a member of a class with linkage) holds them: GCC warns
// (-Wsubobject-linkage) when this file is compiled inside a unity batch.
namespace block_pass {

// The forward pass's intermediate values, kept for the backward pass.
template <typename S>
struct Forward {
    Col<S> rinv, rinv2;          // 1 / rms of each row entering the attention / feed-forward norm
    Mat<S> xhat, xn;             // normalised input before / after the norm weight
    Mat<S> qp, kr;               // [N, H*dh] MHA2MLA query rows, [N, KV*r] RoPE keys before rotation
    Mat<S> latK, latV;           // key (or joint) latent, value latent
    Mat<S> kn, v;                // [N, KV*nope], [N, KV*dh]
    Mat<S> cosT, sinT;           // [N, KV*p] rotation of each kept pair at each row's position
    Mat<S> qh, kh;               // [N, H*dh], [N, KV*dh] per head: rotated block, then position-free dims
    Mat<S> ctx;                  // [N, H*dh] attention context, original value order
    std::vector<Mat<S>> prob;    // [sequence * H + head] attention probabilities (kept for the backward pass)
    Mat<S> h1, xhat2, xn2;       // residual after attention; its normalised forms
    Mat<S> gate, up, sig, act;   // [N, ffn] pre-activations, sigmoid(gate), silu(gate) * up
    Mat<S> y;                    // [N, d]
};

// The backward pass's temporaries.
template <typename S>
struct Backward {
    Mat<S> dy, dAct, dGate, dUp, dxn2, dxhat2, dctx, dqh, dkh, dv, dqp, dkr, dkn, dxn, dLatK, dLatV;
};

} // namespace block_pass

template <typename S>
struct BlockWorkspace<S>::Buffers {
    block_pass::Forward<S> forward;
    block_pass::Backward<S> backward;
};

namespace {

using block_pass::Backward;
using block_pass::Forward;

// Which tensors feed which: the key and value sources are the latent(s) or the normalised input itself.
struct Wiring {
    bool latK = false;    // a key (or joint) latent is computed
    bool latV = false;    // a separate value latent is computed
    bool keysFromLatent = false;
    bool valuesFromJoint = false;
    BlockTensor keyDown = BlockTensor::DownK;
};

Wiring wiring(const BlockShape& s)
{
    Wiring w;
    const bool joint = s.method == LatentMethod::Joint;
    w.keyDown = joint ? BlockTensor::DownKv : BlockTensor::DownK;
    w.keysFromLatent = s.nope() > 0 && (joint || s.method == LatentMethod::Split || s.method == LatentMethod::Key);
    w.latK = joint || w.keysFromLatent;
    w.latV = s.method == LatentMethod::Split || s.method == LatentMethod::Value;
    w.valuesFromJoint = joint;
    return w;
}

template <typename S>
void addRow(Mat<S>& y, const Mat<S>& bias)
{
    if (bias.size() == 0)
        return;
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < y.rows(); ++i)
        y.row(i) += bias.row(0);
}

template <typename S>
void linearForward(const Mat<S>& x, const Mat<S>& w, const Mat<S>& bias, Mat<S>& y)
{
    y.resize(x.rows(), w.rows());
    multiplyBt<S>(x, w, y);
    addRow(y, bias);
}

template <typename S>
void rmsNormForward(const Mat<S>& x, const Mat<S>& weight, double eps, Col<S>& rinv, Mat<S>& xhat, Mat<S>& xn)
{
    rinv.resize(x.rows());
    xhat.resize(x.rows(), x.cols());
    xn.resize(x.rows(), x.cols());
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < x.rows(); ++i) {
        const S meanSquare = x.row(i).squaredNorm() / static_cast<S>(x.cols());
        rinv(i) = S(1) / std::sqrt(meanSquare + static_cast<S>(eps));
        xhat.row(i) = x.row(i) * rinv(i);
        xn.row(i) = xhat.row(i).cwiseProduct(weight.row(0));
    }
}

// dx of xhat = x * rinv(x) from dxhat, row by row: rinv * (dxhat - xhat * mean(dxhat . xhat)).
template <typename S>
void rmsNormBackward(const Mat<S>& xhat, const Col<S>& rinv, const Mat<S>& dxhat, Mat<S>& dx, bool accumulate)
{
    if (!accumulate)
        dx.setZero(xhat.rows(), xhat.cols());
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < xhat.rows(); ++i) {
        const S m = dxhat.row(i).dot(xhat.row(i)) / static_cast<S>(xhat.cols());
        dx.row(i) += rinv(i) * (dxhat.row(i) - m * xhat.row(i));
    }
}

// grad [1, d] = column sums of a . b, top to bottom.
template <typename S>
void weightedColumnSums(const Mat<S>& a, const Mat<S>& b, Mat<S>& grad)
{
    const Mat<S> product = a.cwiseProduct(b);
    grad.resize(1, a.cols());
    columnSums<S>(product, grad);
}

template <typename S>
void ropeTables(const BlockShape& s, const std::vector<std::int64_t>& starts, Forward<S>& f)
{
    const Index n = starts.back();
    const Index p = s.ropePairs;
    f.cosT.resize(n, s.kvHeads * p);
    f.sinT.resize(n, s.kvHeads * p);
    if (p == 0)
        return;
    for (std::size_t q = 0; q + 1 < starts.size(); ++q) {
        for (std::int64_t row = starts[q]; row < starts[q + 1]; ++row) {
            const std::int64_t position = row - starts[q];
            for (Index kv = 0; kv < s.kvHeads; ++kv) {
                for (Index i = 0; i < p; ++i) {
                    // As the engine: the angle in the working precision from the float frequency.
                    const S angle = static_cast<S>(position) * static_cast<S>(s.ropeFreqs[static_cast<std::size_t>(kv)][static_cast<std::size_t>(i)]);
                    f.cosT(row, kv * p + i) = std::cos(angle);
                    f.sinT(row, kv * p + i) = std::sin(angle);
                }
            }
        }
    }
}

// Per-head [rotated | nope] blocks from the projections: `rope` [N, heads*r] (head-major), `nope` [N, heads*nope]
// (or KV heads for keys). Query head h uses its KV head's angles.
template <typename S>
void assembleHeads(const BlockShape& s, const Forward<S>& f, const Mat<S>& rope, const Index ropeOffset, const Mat<S>& nopeSrc,
                   const Index nopeOffset, Index heads, Index group, Mat<S>& out)
{
    const Index dh = s.headDim, p = s.ropePairs, r = 2 * p, nope = s.nope();
    out.resize(rope.rows(), heads * dh);
#pragma omp parallel for schedule(static)
    for (Index n = 0; n < out.rows(); ++n) {
        for (Index h = 0; h < heads; ++h) {
            const Index kv = h / group;
            S* dst = out.row(n).data() + h * dh;
            const S* src = rope.row(n).data() + ropeOffset + h * r;
            for (Index i = 0; i < p; ++i) {
                const S c = f.cosT(n, kv * p + i), sn = f.sinT(n, kv * p + i);
                const S a = src[i], b = src[i + p];
                dst[i] = a * c - b * sn;
                dst[i + p] = a * sn + b * c;
            }
            const S* srcNope = nopeSrc.row(n).data() + nopeOffset + h * nope;
            for (Index j = 0; j < nope; ++j)
                dst[r + j] = srcNope[j];
        }
    }
}

// The inverse: gradients of the per-head blocks back to the projections' layouts (rotation transposed).
template <typename S>
void scatterHeads(const BlockShape& s, const Forward<S>& f, const Mat<S>& grad, Index heads, Index group, Mat<S>& rope,
                  Index ropeOffset, Mat<S>& nopeDst, Index nopeOffset)
{
    const Index dh = s.headDim, p = s.ropePairs, r = 2 * p, nope = s.nope();
#pragma omp parallel for schedule(static)
    for (Index n = 0; n < grad.rows(); ++n) {
        for (Index h = 0; h < heads; ++h) {
            const Index kv = h / group;
            const S* src = grad.row(n).data() + h * dh;
            S* dst = rope.row(n).data() + ropeOffset + h * r;
            for (Index i = 0; i < p; ++i) {
                const S c = f.cosT(n, kv * p + i), sn = f.sinT(n, kv * p + i);
                const S ga = src[i], gb = src[i + p];
                dst[i] = ga * c + gb * sn;
                dst[i + p] = gb * c - ga * sn;
            }
            S* dstNope = nopeDst.row(n).data() + nopeOffset + h * nope;
            for (Index j = 0; j < nope; ++j)
                dstNope[j] = src[r + j];
        }
    }
}

template <typename S>
using ConstBlock = Eigen::Ref<const Mat<S>, 0, Eigen::OuterStride<>>;
template <typename S>
using MutBlock = Eigen::Ref<Mat<S>, 0, Eigen::OuterStride<>>;

// Attention of one head over one sequence, in row blocks of kRowBlock queries: each block multiplies only the keys
// its rows may see (causal, optionally a sliding window), which halves the work of long sequences.
constexpr Index kRowBlock = 64;

struct RowBlock {
    Index row0, rows, key0, keys;
};

RowBlock rowBlock(Index row0, Index t, std::int64_t window)
{
    RowBlock b;
    b.row0 = row0;
    b.rows = std::min(kRowBlock, t - row0);
    b.key0 = window > 0 ? std::max<Index>(0, row0 + 1 - window) : 0;
    b.keys = row0 + b.rows - b.key0;
    return b;
}

// prob [t, t] = masked softmax(scale q k^T) (zero outside the mask), ctx = prob v.
template <typename S>
void attentionForward(const BlockShape& s, ConstBlock<S> q, ConstBlock<S> k, ConstBlock<S> v, Mat<S>& prob, MutBlock<S> ctx)
{
    const Index t = q.rows();
    const S scale = S(1) / std::sqrt(static_cast<S>(s.headDim));
    prob.setZero(t, t);
    for (Index row0 = 0; row0 < t; row0 += kRowBlock) {
        const RowBlock b = rowBlock(row0, t, s.slidingWindow);
        auto scores = prob.block(b.row0, b.key0, b.rows, b.keys);
        scores.noalias() = q.middleRows(b.row0, b.rows) * k.middleRows(b.key0, b.keys).transpose();
        for (Index i = b.row0; i < b.row0 + b.rows; ++i) {
            const Index begin = s.slidingWindow > 0 ? std::max<Index>(0, i + 1 - s.slidingWindow) : 0;
            auto row = prob.row(i).segment(begin, i + 1 - begin);
            row *= scale;
            const S maxValue = row.maxCoeff();
            row = (row.array() - maxValue).exp().matrix();
            row *= S(1) / row.sum();
            prob.row(i).segment(b.key0, begin - b.key0).setZero();
            prob.row(i).segment(i + 1, b.key0 + b.keys - i - 1).setZero();
        }
        ctx.middleRows(b.row0, b.rows).noalias() = scores * v.middleRows(b.key0, b.keys);
    }
}

// From dctx: dq (assigned), dk and dv (accumulated). `prob` is overwritten.
template <typename S>
void attentionBackward(const BlockShape& s, ConstBlock<S> q, ConstBlock<S> k, ConstBlock<S> v, Mat<S>& prob, ConstBlock<S> dctx,
                       MutBlock<S> dq, MutBlock<S> dk, MutBlock<S> dv, Mat<S>& work)
{
    const Index t = q.rows();
    const S scale = S(1) / std::sqrt(static_cast<S>(s.headDim));
    for (Index row0 = 0; row0 < t; row0 += kRowBlock) {
        const RowBlock b = rowBlock(row0, t, s.slidingWindow);
        auto p = prob.block(b.row0, b.key0, b.rows, b.keys);
        const auto dc = dctx.middleRows(b.row0, b.rows);
        work.resize(b.rows, b.keys);
        work.noalias() = dc * v.middleRows(b.key0, b.keys).transpose();
        dv.middleRows(b.key0, b.keys).noalias() += p.transpose() * dc;
        // dS = P . (dP - rowsum(dP . P)) * scale, in place of P (zero outside the mask since P is).
        for (Index i = 0; i < b.rows; ++i) {
            const S dot = work.row(i).dot(p.row(i));
            p.row(i) = (p.row(i).array() * (work.row(i).array() - dot) * scale).matrix();
        }
        dq.middleRows(b.row0, b.rows).noalias() = p * k.middleRows(b.key0, b.keys);
        dk.middleRows(b.key0, b.keys).noalias() += p.transpose() * q.middleRows(b.row0, b.rows);
    }
}

template <typename S>
void forward(const BlockShape& s, const BlockTensors<S>& p, const FrozenFfn<S>& ffn, const BlockBatch<S>& b, Forward<S>& f,
             bool keepProbabilities)
{
    using B = BlockTensor;
    const Wiring w = wiring(s);
    const Index n = b.rows(), dh = s.headDim, r = s.rope(), H = s.heads, KV = s.kvHeads;
    rmsNormForward(b.input, p[B::AttnNorm], s.rmsEps, f.rinv, f.xhat, f.xn);
    linearForward(f.xn, p[B::Q], p[B::QBias], f.qp);
    if (r > 0)
        linearForward(f.xn, p[B::KRope], p[B::KRopeBias], f.kr);
    else
        f.kr.resize(n, 0);
    if (w.latK)
        linearForward(f.xn, p[w.keyDown], Mat<S>(), f.latK);
    if (w.latV)
        linearForward(f.xn, p[B::DownV], Mat<S>(), f.latV);
    const Mat<S>& keySource = w.keysFromLatent ? f.latK : f.xn;
    const Mat<S>& valueSource = w.valuesFromJoint ? f.latK : (w.latV ? f.latV : f.xn);
    if (s.nope() > 0)
        linearForward(keySource, p[B::UpK], p[B::UpKBias], f.kn);
    else
        f.kn.resize(n, 0);
    linearForward(valueSource, p[B::UpV], p[B::UpVBias], f.v);

    ropeTables(s, b.starts, f);
    assembleHeads(s, f, f.qp, 0, f.qp, H * r, H, s.group(), f.qh);
    assembleHeads(s, f, f.kr, 0, f.kn, 0, KV, 1, f.kh);

    f.ctx.resize(n, H * dh);
    const Index sequences = static_cast<Index>(b.starts.size()) - 1;
    if (keepProbabilities)
        f.prob.resize(static_cast<std::size_t>(sequences * H));
#pragma omp parallel for schedule(dynamic, 1)
    for (Index task = 0; task < sequences * H; ++task) {
        const Index q = task / H, h = task % H, kv = h / s.group();
        const Index s0 = b.starts[static_cast<std::size_t>(q)], t = b.starts[static_cast<std::size_t>(q) + 1] - s0;
        Mat<S> local;
        Mat<S>& prob = keepProbabilities ? f.prob[static_cast<std::size_t>(task)] : local;
        attentionForward<S>(s, f.qh.block(s0, h * dh, t, dh), f.kh.block(s0, kv * dh, t, dh), f.v.block(s0, kv * dh, t, dh),
                            prob, f.ctx.block(s0, h * dh, t, dh));
    }

    linearForward(f.ctx, p[B::O], p[B::OBias], f.h1);
    f.h1 += b.input;
    rmsNormForward(f.h1, p[B::FfnNorm], s.rmsEps, f.rinv2, f.xhat2, f.xn2);
    linearForward(f.xn2, ffn.gate, ffn.gateBias, f.gate);
    linearForward(f.xn2, ffn.up, ffn.upBias, f.up);
    f.sig.resize(n, s.ffn);
    f.act.resize(n, s.ffn);
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < n; ++i) {
        f.sig.row(i) = (S(1) + (-f.gate.row(i).array()).exp()).inverse().matrix();
        f.act.row(i) = (f.gate.row(i).array() * f.sig.row(i).array() * f.up.row(i).array()).matrix();
    }
    linearForward(f.act, ffn.down, ffn.downBias, f.y);
    f.y += f.h1;
}

// sum (y - target)^2 in double, rows in parallel and their sums added in row order.
template <typename S>
double squaredError(const Mat<S>& y, const Mat<S>& target)
{
    std::vector<double> rows(static_cast<std::size_t>(y.rows()));
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < y.rows(); ++i) {
        double sum = 0.0;
        for (Index j = 0; j < y.cols(); ++j) {
            const double e = static_cast<double>(y(i, j)) - static_cast<double>(target(i, j));
            sum += e * e;
        }
        rows[static_cast<std::size_t>(i)] = sum;
    }
    double total = 0.0;
    for (double v : rows)
        total += v;
    return total;
}

template <typename S>
void checkBatch(const BlockShape& s, const BlockBatch<S>& b, bool needTarget)
{
    if (b.starts.size() < 2 || b.starts.front() != 0 || b.starts.back() != b.rows() || b.input.cols() != s.hidden)
        throw Error("internal: malformed heal batch");
    for (std::size_t i = 0; i + 1 < b.starts.size(); ++i)
        if (b.starts[i + 1] <= b.starts[i])
            throw Error("internal: empty sequence in a heal batch");
    if (needTarget && (b.target.rows() != b.rows() || b.target.cols() != s.hidden))
        throw Error("internal: heal batch targets do not match its inputs");
}

} // namespace

std::string_view blockTensorName(BlockTensor t)
{
    return kNames[static_cast<std::size_t>(t)];
}

BlockShape blockShape(const ModelConfig& c, std::int64_t layer)
{
    if (!c.isMla())
        throw Error("internal: healing needs a converted (MLA) model");
    if (layer < 0 || layer >= c.layers)
        throw Error("internal: layer " + std::to_string(layer) + " out of range");
    const auto plans = planAttention(c);
    const LayerAttentionPlan& plan = plans[static_cast<std::size_t>(layer)];
    const MlaLayerConfig& m = c.mla->layers[static_cast<std::size_t>(layer)];
    BlockShape s;
    s.hidden = c.hidden;
    s.heads = c.heads;
    s.kvHeads = c.kvHeads;
    s.headDim = c.headDim;
    s.ropePairs = plan.ropePairs;
    s.ffn = c.ffn;
    s.method = m.method;
    s.slidingWindow = c.slidingWindow;
    s.rmsEps = c.rmsEps;
    s.ropeFreqs = plan.ropeFreqs;
    return s;
}

template <typename S>
BlockTensors<S> BlockTensors<S>::zerosLike() const
{
    BlockTensors<S> z;
    for (std::size_t i = 0; i < kBlockTensorCount; ++i)
        z.t[i].setZero(t[i].rows(), t[i].cols());
    return z;
}

template <typename S>
template <typename T>
BlockTensors<T> BlockTensors<S>::cast() const
{
    BlockTensors<T> out;
    for (std::size_t i = 0; i < kBlockTensorCount; ++i)
        out.t[i] = t[i].template cast<T>();
    return out;
}

template <typename S>
template <typename T>
FrozenFfn<T> FrozenFfn<S>::cast() const
{
    FrozenFfn<T> out;
    out.gate = gate.template cast<T>();
    out.up = up.template cast<T>();
    out.down = down.template cast<T>();
    out.gateBias = gateBias.template cast<T>();
    out.upBias = upBias.template cast<T>();
    out.downBias = downBias.template cast<T>();
    return out;
}

TrainMask trainMask(const BlockShape& s, const BlockTensors<float>& params, bool trainNorms)
{
    using B = BlockTensor;
    TrainMask mask{};
    for (std::size_t i = 0; i < kBlockTensorCount; ++i)
        mask[i] = params.t[i].size() > 0;
    mask[static_cast<std::size_t>(B::UpKBias)] = false;
    mask[static_cast<std::size_t>(B::AttnNorm)] = trainNorms && mask[static_cast<std::size_t>(B::AttnNorm)];
    mask[static_cast<std::size_t>(B::FfnNorm)] = trainNorms && mask[static_cast<std::size_t>(B::FfnNorm)];
    if (s.nope() == 0) {
        mask[static_cast<std::size_t>(B::UpK)] = false;
        if (s.method != LatentMethod::Joint)
            mask[static_cast<std::size_t>(B::DownK)] = false;
    }
    return mask;
}

BlockTensors<float> blockParameters(const LayerWeights& w)
{
    using B = BlockTensor;
    BlockTensors<float> p;
    p[B::Q] = matrixOf(w.q);
    p[B::QBias] = rowOf(w.qBias);
    p[B::KRope] = matrixOf(w.kRope);
    p[B::KRopeBias] = rowOf(w.kRopeBias);
    p[B::DownKv] = matrixOf(w.downKv);
    p[B::DownK] = matrixOf(w.downK);
    p[B::DownV] = matrixOf(w.downV);
    p[B::UpK] = matrixOf(w.upK);
    p[B::UpKBias] = rowOf(w.upKBias);
    p[B::UpV] = matrixOf(w.upV);
    p[B::UpVBias] = rowOf(w.upVBias);
    p[B::O] = matrixOf(w.o);
    p[B::OBias] = rowOf(w.oBias);
    p[B::AttnNorm] = rowOf(w.attnNorm);
    p[B::FfnNorm] = rowOf(w.ffnNorm);
    return p;
}

FrozenFfn<float> frozenFfn(const LayerWeights& w)
{
    FrozenFfn<float> f;
    f.gate = matrixOf(w.gate);
    f.up = matrixOf(w.up);
    f.down = matrixOf(w.down);
    f.gateBias = rowOf(w.gateBias);
    f.upBias = rowOf(w.upBias);
    f.downBias = rowOf(w.downBias);
    return f;
}

void installBlockParameters(const BlockTensors<float>& p, LayerWeights& w, const TrainMask& which)
{
    using B = BlockTensor;
    auto matrix = [&](B b, Tensor& t) {
        if (which[static_cast<std::size_t>(b)] && p[b].size() > 0)
            t = Tensor::fromMatrix(p[b]);
    };
    auto vector = [&](B b, VectorF& v) {
        if (which[static_cast<std::size_t>(b)] && p[b].size() > 0)
            v = p[b].row(0).transpose();
    };
    matrix(B::Q, w.q);
    vector(B::QBias, w.qBias);
    matrix(B::KRope, w.kRope);
    vector(B::KRopeBias, w.kRopeBias);
    matrix(B::DownKv, w.downKv);
    matrix(B::DownK, w.downK);
    matrix(B::DownV, w.downV);
    matrix(B::UpK, w.upK);
    vector(B::UpKBias, w.upKBias);
    matrix(B::UpV, w.upV);
    vector(B::UpVBias, w.upVBias);
    matrix(B::O, w.o);
    vector(B::OBias, w.oBias);
    vector(B::AttnNorm, w.attnNorm);
    vector(B::FfnNorm, w.ffnNorm);
}

template <typename S>
BlockWorkspace<S>::BlockWorkspace() : m_buffers(std::make_unique<Buffers>())
{
}

template <typename S>
BlockWorkspace<S>::~BlockWorkspace() = default;

template <typename S>
Mat<S> blockOutput(const BlockShape& s, const BlockTensors<S>& p, const FrozenFfn<S>& ffn, const BlockBatch<S>& b)
{
    checkBatch(s, b, false);
    Forward<S> f;
    forward(s, p, ffn, b, f, false);
    return std::move(f.y);
}

template <typename S>
double blockLoss(const BlockShape& s, const BlockTensors<S>& p, const FrozenFfn<S>& ffn, const BlockBatch<S>& b,
                 BlockWorkspace<S>* workspace)
{
    checkBatch(s, b, true);
    BlockWorkspace<S> local;
    Forward<S>& f = (workspace ? workspace : &local)->buffers().forward;
    forward(s, p, ffn, b, f, false);
    return squaredError(f.y, b.target) / (static_cast<double>(b.rows()) * static_cast<double>(s.hidden) * static_cast<double>(b.normaliser));
}

template <typename S>
double blockLossAndGradient(const BlockShape& s, const BlockTensors<S>& p, const FrozenFfn<S>& ffn, const BlockBatch<S>& b,
                            const TrainMask& mask, BlockTensors<S>& g, BlockWorkspace<S>* workspace)
{
    using B = BlockTensor;
    checkBatch(s, b, true);
    auto wanted = [&](B t) { return mask[static_cast<std::size_t>(t)] && p[t].size() > 0; };
    for (std::size_t t = 0; t < kBlockTensorCount; ++t)
        if (!wanted(static_cast<B>(t)))
            g.t[t].resize(0, 0);
    const Wiring wire = wiring(s);
    const Index n = b.rows(), d = s.hidden, dh = s.headDim, r = s.rope(), H = s.heads, KV = s.kvHeads, nope = s.nope();
    BlockWorkspace<S> local;
    auto& buffers = (workspace ? workspace : &local)->buffers();
    Forward<S>& f = buffers.forward;
    Backward<S>& w = buffers.backward;
    forward(s, p, ffn, b, f, true);
    const double scaleLoss = static_cast<double>(n) * static_cast<double>(d) * static_cast<double>(b.normaliser);
    const double loss = squaredError(f.y, b.target) / scaleLoss;

    // Output and feed-forward half: dy, then through the frozen MLP and its norm into the residual after attention.
    const S two = static_cast<S>(2.0 / scaleLoss);
    Mat<S>& dy = w.dy;
    dy = (f.y - b.target) * two;
    Mat<S>& dAct = w.dAct;
    dAct.resize(n, s.ffn);
    multiply<S>(dy, ffn.down, dAct);
    Mat<S>& dGate = w.dGate;
    Mat<S>& dUp = w.dUp;
    dGate.resize(n, s.ffn);
    dUp.resize(n, s.ffn);
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < n; ++i) {
        const auto gv = f.gate.row(i).array();
        const auto sig = f.sig.row(i).array();
        dUp.row(i) = (dAct.row(i).array() * gv * sig).matrix();
        dGate.row(i) = (dAct.row(i).array() * f.up.row(i).array() * sig * (S(1) + gv * (S(1) - sig))).matrix();
    }
    Mat<S>& dxn2 = w.dxn2;
    dxn2.resize(n, d);
    multiply<S>(dGate, ffn.gate, dxn2);
    multiply<S>(dUp, ffn.up, dxn2, true);
    if (wanted(B::FfnNorm))
        weightedColumnSums(dxn2, f.xhat2, g[B::FfnNorm]);
    Mat<S>& dxhat2 = w.dxhat2;
    dxhat2 = dxn2.array().rowwise() * p[B::FfnNorm].row(0).array();
    Mat<S>& dh1 = dy; // the residual passes dy through unchanged
    rmsNormBackward(f.xhat2, f.rinv2, dxhat2, dh1, true);

    // Output projection.
    if (wanted(B::O)) {
        g[B::O].resize(d, H * dh);
        multiplyAt<S>(dh1, f.ctx, g[B::O]);
    }
    if (wanted(B::OBias)) {
        g[B::OBias].resize(1, d);
        columnSums<S>(dh1, g[B::OBias]);
    }
    Mat<S>& dctx = w.dctx;
    dctx.resize(n, H * dh);
    multiply<S>(dh1, p[B::O], dctx);

    // Attention, one task per (sequence, KV head): its query heads in order, so dK and dV sum in a fixed order.
    Mat<S>& dqh = w.dqh;
    Mat<S>& dkh = w.dkh;
    Mat<S>& dv = w.dv;
    dqh.resize(n, H * dh);
    dkh.resize(n, KV * dh);
    dv.resize(n, KV * dh);
    const Index sequences = static_cast<Index>(b.starts.size()) - 1;
#pragma omp parallel for schedule(dynamic, 1)
    for (Index task = 0; task < sequences * KV; ++task) {
        const Index q = task / KV, kv = task % KV;
        const Index s0 = b.starts[static_cast<std::size_t>(q)], t = b.starts[static_cast<std::size_t>(q) + 1] - s0;
        dkh.block(s0, kv * dh, t, dh).setZero();
        dv.block(s0, kv * dh, t, dh).setZero();
        Mat<S> work;
        for (Index h = kv * s.group(); h < (kv + 1) * s.group(); ++h) {
            attentionBackward<S>(s, f.qh.block(s0, h * dh, t, dh), f.kh.block(s0, kv * dh, t, dh), f.v.block(s0, kv * dh, t, dh),
                                 f.prob[static_cast<std::size_t>(q * H + h)], dctx.block(s0, h * dh, t, dh),
                                 dqh.block(s0, h * dh, t, dh), dkh.block(s0, kv * dh, t, dh), dv.block(s0, kv * dh, t, dh), work);
        }
    }

    Mat<S>& dqp = w.dqp;
    Mat<S>& dkr = w.dkr;
    Mat<S>& dkn = w.dkn;
    dqp.resize(n, H * dh);
    dkr.resize(n, KV * r);
    dkn.resize(n, KV * nope);
    scatterHeads(s, f, dqh, H, s.group(), dqp, 0, dqp, H * r);
    scatterHeads(s, f, dkh, KV, 1, dkr, 0, dkn, 0);

    // Projections. dxn is only needed for the attention norm's weight; the latents' gradients for the downs.
    const bool needDxn = wanted(B::AttnNorm);
    Mat<S>& dxn = w.dxn;
    if (needDxn)
        dxn.setZero(n, d);
    Mat<S>& dLatK = w.dLatK;
    Mat<S>& dLatV = w.dLatV;
    const bool needLatK = wire.latK && (wanted(wire.keyDown) || needDxn);
    const bool needLatV = wire.latV && (wanted(B::DownV) || needDxn);
    if (needLatK)
        dLatK.setZero(n, p[wire.keyDown].rows());
    if (needLatV)
        dLatV.setZero(n, p[B::DownV].rows());

    auto weightGrad = [&](B t, const Mat<S>& dOut, const Mat<S>& in) {
        if (!wanted(t))
            return;
        g[t].resize(dOut.cols(), in.cols());
        multiplyAt<S>(dOut, in, g[t]);
    };
    auto biasGrad = [&](B t, const Mat<S>& dOut) {
        if (!wanted(t))
            return;
        g[t].resize(1, dOut.cols());
        columnSums<S>(dOut, g[t]);
    };
    // d(source) += dOut W, into the latent it came from or into dxn.
    auto inputGrad = [&](const Mat<S>& dOut, const Mat<S>& weight, bool fromLatK, bool fromLatV) {
        Mat<S>* target = fromLatK ? (needLatK ? &dLatK : nullptr) : fromLatV ? (needLatV ? &dLatV : nullptr) : (needDxn ? &dxn : nullptr);
        if (target)
            multiply<S>(dOut, weight, *target, true);
    };

    const Mat<S>& keySource = wire.keysFromLatent ? f.latK : f.xn;
    const Mat<S>& valueSource = wire.valuesFromJoint ? f.latK : (wire.latV ? f.latV : f.xn);
    if (nope > 0) {
        weightGrad(B::UpK, dkn, keySource);
        biasGrad(B::UpKBias, dkn);
        inputGrad(dkn, p[B::UpK], wire.keysFromLatent, false);
    }
    weightGrad(B::UpV, dv, valueSource);
    biasGrad(B::UpVBias, dv);
    inputGrad(dv, p[B::UpV], wire.valuesFromJoint, !wire.valuesFromJoint && wire.latV);
    if (wire.latK && needLatK) {
        weightGrad(wire.keyDown, dLatK, f.xn);
        inputGrad(dLatK, p[wire.keyDown], false, false);
    }
    if (wire.latV && needLatV) {
        weightGrad(B::DownV, dLatV, f.xn);
        inputGrad(dLatV, p[B::DownV], false, false);
    }
    weightGrad(B::Q, dqp, f.xn);
    biasGrad(B::QBias, dqp);
    inputGrad(dqp, p[B::Q], false, false);
    if (r > 0) {
        weightGrad(B::KRope, dkr, f.xn);
        biasGrad(B::KRopeBias, dkr);
        inputGrad(dkr, p[B::KRope], false, false);
    }
    if (needDxn)
        weightedColumnSums(dxn, f.xhat, g[B::AttnNorm]);
    return loss;
}

#define MLA_HEAL_BLOCK(S)                                                                                                 \
    template struct BlockTensors<S>;                                                                                      \
    template struct FrozenFfn<S>;                                                                                         \
    template Mat<S> blockOutput<S>(const BlockShape&, const BlockTensors<S>&, const FrozenFfn<S>&, const BlockBatch<S>&); \
    template class BlockWorkspace<S>;                                                                                     \
    template double blockLoss<S>(const BlockShape&, const BlockTensors<S>&, const FrozenFfn<S>&, const BlockBatch<S>&,    \
                                 BlockWorkspace<S>*);                                                                     \
    template double blockLossAndGradient<S>(const BlockShape&, const BlockTensors<S>&, const FrozenFfn<S>&,               \
                                            const BlockBatch<S>&, const TrainMask&, BlockTensors<S>&, BlockWorkspace<S>*);
MLA_HEAL_BLOCK(float)
MLA_HEAL_BLOCK(double)
#undef MLA_HEAL_BLOCK
template BlockTensors<double> BlockTensors<float>::cast<double>() const;
template BlockTensors<float> BlockTensors<double>::cast<float>() const;
template FrozenFfn<double> FrozenFfn<float>::cast<double>() const;
template FrozenFfn<float> FrozenFfn<double>::cast<float>() const;

} // namespace mla::heal
