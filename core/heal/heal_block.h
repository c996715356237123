#pragma once

#include "model/model.h"

#include <Eigen/Core>

#include <array>
#include <memory>
#include <cstdint>
#include <string_view>
#include <vector>

// One converted decoder block as the healer trains it: the MLA attention in its expanded form (partial RoPE on the
// kept pairs of each KV head, GQA, the latent(s) the converter wrote, biases, causal and sliding-window mask), then
// the frozen feed-forward half, so that the loss sits on the block output. Forward and a hand-written backward,
// templated on the scalar: float for training, double for the finite-difference gradient check.
namespace mla::heal {

template <typename S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Everything about one layer's shape that the block needs.
struct BlockShape {
    std::int64_t hidden = 0;
    std::int64_t heads = 0;
    std::int64_t kvHeads = 0;
    std::int64_t headDim = 0;
    std::int64_t ropePairs = 0;            // p kept pairs per KV head (r = 2p rotated dims)
    std::int64_t ffn = 0;
    LatentMethod method = LatentMethod::Joint;
    std::int64_t slidingWindow = 0;        // 0: full causal
    double rmsEps = 1e-5;
    std::vector<std::vector<float>> ropeFreqs; // [kvHead][p] frequencies of the kept pairs

    std::int64_t group() const { return heads / kvHeads; }
    std::int64_t rope() const { return 2 * ropePairs; }
    std::int64_t nope() const { return headDim - 2 * ropePairs; }
};

// The shape of layer `layer` of a converted (MLA) model.
BlockShape blockShape(const ModelConfig& converted, std::int64_t layer);

// The tensors of a block, by role; vectors are stored as one-row matrices, an absent tensor is 0 x 0. The same
// container holds parameters, gradients and optimiser moments. Layouts are those of LayerWeights (MHA2MLA order).
enum class BlockTensor {
    Q, QBias, KRope, KRopeBias, DownKv, DownK, DownV, UpK, UpKBias, UpV, UpVBias, O, OBias, AttnNorm, FfnNorm,
    Count
};
inline constexpr std::size_t kBlockTensorCount = static_cast<std::size_t>(BlockTensor::Count);
std::string_view blockTensorName(BlockTensor t); // "q_proj", "q_proj.bias", ... as in the export

template <typename S>
struct BlockTensors {
    std::array<Mat<S>, kBlockTensorCount> t;
    Mat<S>& operator[](BlockTensor b) { return t[static_cast<std::size_t>(b)]; }
    const Mat<S>& operator[](BlockTensor b) const { return t[static_cast<std::size_t>(b)]; }
    // Same shapes, all zero.
    BlockTensors zerosLike() const;
    template <typename T>
    BlockTensors<T> cast() const;
};

using TrainMask = std::array<bool, kBlockTensorCount>;

// Which tensors the healer trains: every attention tensor the layer has (queries' kept and removed rows, RoPE keys,
// down and up projections, W_o, their biases), the norms only when asked. Never the key up-projection bias: it adds
// q_nope . b_k to every logit of a query, a constant the softmax removes, so its gradient is exactly zero and Adam
// would only amplify rounding noise. Never a down projection whose latent feeds nothing (no position-free dims).
TrainMask trainMask(const BlockShape& shape, const BlockTensors<float>& params, bool trainNorms);

// The frozen feed-forward half of the block.
template <typename S>
struct FrozenFfn {
    Mat<S> gate, up, down;          // [ffn, d], [ffn, d], [d, ffn]
    Mat<S> gateBias, upBias, downBias; // one row, or empty
    template <typename T>
    FrozenFfn<T> cast() const;
};

// The trainable tensors and the feed-forward half of a converted layer, as float32.
BlockTensors<float> blockParameters(const LayerWeights& layer);
FrozenFfn<float> frozenFfn(const LayerWeights& layer);
// Writes the tensors selected by `which` back into a converted layer (owned float32 tensors); the others stay shared.
void installBlockParameters(const BlockTensors<float>& params, LayerWeights& layer, const TrainMask& which);

// Sequences stacked row-wise: the block inputs (residual stream entering the layer) and the target outputs.
template <typename S>
struct BlockBatch {
    Mat<S> input;                     // [N, d]
    Mat<S> target;                    // [N, d]; may be empty for blockOutput
    std::vector<std::int64_t> starts; // first row of each sequence, then N
    S normaliser = 1;                 // loss = sum (y - target)^2 / (N d normaliser)
    std::int64_t rows() const { return input.rows(); }
};

// Buffers reused across calls (a forward pass's intermediates, the backward's temporaries), so that a training loop
// does not allocate and fault in fresh pages at every step. One per thread of calls.
template <typename S>
class BlockWorkspace {
public:
    BlockWorkspace();
    ~BlockWorkspace();
    BlockWorkspace(const BlockWorkspace&) = delete;
    BlockWorkspace& operator=(const BlockWorkspace&) = delete;
    struct Buffers;
    Buffers& buffers() { return *m_buffers; }

private:
    std::unique_ptr<Buffers> m_buffers;
};

// The block output [N, d].
template <typename S>
Mat<S> blockOutput(const BlockShape& shape, const BlockTensors<S>& params, const FrozenFfn<S>& ffn, const BlockBatch<S>& batch);

// The loss (mean squared error over tokens and dims, divided by batch.normaliser), summed in double in a fixed order.
template <typename S>
double blockLoss(const BlockShape& shape, const BlockTensors<S>& params, const FrozenFfn<S>& ffn, const BlockBatch<S>& batch,
                 BlockWorkspace<S>* workspace = nullptr);

// The loss and its gradient with respect to every tensor with mask[t] set (the others are left empty). Each
// reduction runs in an order fixed by the shapes alone, so results do not depend on the number of threads.
template <typename S>
double blockLossAndGradient(const BlockShape& shape, const BlockTensors<S>& params, const FrozenFfn<S>& ffn,
                            const BlockBatch<S>& batch, const TrainMask& mask, BlockTensors<S>& gradient,
                            BlockWorkspace<S>* workspace = nullptr);

} // namespace mla::heal
