#include "model/tensor_plan.h"

#include "util/error.h"

namespace mla {
namespace {

struct LayerSlot {
    TensorRole role;
    Tensor LayerWeights::*matrix;
    VectorF LayerWeights::*vector;
};

constexpr LayerSlot kLayerSlots[] = {
    {TensorRole::AttnNorm, nullptr, &LayerWeights::attnNorm},
    {TensorRole::Q, &LayerWeights::q, nullptr},
    {TensorRole::K, &LayerWeights::k, nullptr},
    {TensorRole::V, &LayerWeights::v, nullptr},
    {TensorRole::O, &LayerWeights::o, nullptr},
    {TensorRole::QBias, nullptr, &LayerWeights::qBias},
    {TensorRole::KBias, nullptr, &LayerWeights::kBias},
    {TensorRole::VBias, nullptr, &LayerWeights::vBias},
    {TensorRole::OBias, nullptr, &LayerWeights::oBias},
    {TensorRole::QNorm, nullptr, &LayerWeights::qNorm},
    {TensorRole::KNorm, nullptr, &LayerWeights::kNorm},
    {TensorRole::FfnNorm, nullptr, &LayerWeights::ffnNorm},
    {TensorRole::Gate, &LayerWeights::gate, nullptr},
    {TensorRole::Up, &LayerWeights::up, nullptr},
    {TensorRole::Down, &LayerWeights::down, nullptr},
    {TensorRole::GateBias, nullptr, &LayerWeights::gateBias},
    {TensorRole::UpBias, nullptr, &LayerWeights::upBias},
    {TensorRole::DownBias, nullptr, &LayerWeights::downBias},
    {TensorRole::KRope, &LayerWeights::kRope, nullptr},
    {TensorRole::KRopeBias, nullptr, &LayerWeights::kRopeBias},
    {TensorRole::DownKv, &LayerWeights::downKv, nullptr},
    {TensorRole::DownK, &LayerWeights::downK, nullptr},
    {TensorRole::DownV, &LayerWeights::downV, nullptr},
    {TensorRole::UpK, &LayerWeights::upK, nullptr},
    {TensorRole::UpKBias, nullptr, &LayerWeights::upKBias},
    {TensorRole::UpV, &LayerWeights::upV, nullptr},
    {TensorRole::UpVBias, nullptr, &LayerWeights::upVBias},
    {TensorRole::QA, &LayerWeights::qA, nullptr},
    {TensorRole::QABias, nullptr, &LayerWeights::qABias},
    {TensorRole::QANorm, nullptr, &LayerWeights::qANorm},
    {TensorRole::QB, &LayerWeights::qB, nullptr},
    {TensorRole::KvA, &LayerWeights::kvA, nullptr},
    {TensorRole::KvABias, nullptr, &LayerWeights::kvABias},
    {TensorRole::KvANorm, nullptr, &LayerWeights::kvANorm},
    {TensorRole::KvB, &LayerWeights::kvB, nullptr},
};

const LayerSlot& slot(TensorRole role)
{
    for (const auto& s : kLayerSlots) {
        if (s.role == role)
            return s;
    }
    throw Error("internal: no layer slot for the " + std::string(tensorRoleLabel(role)));
}

// DeepSeek-V2/V3: the tensors transformers' DeepseekV3Attention creates, in its order.
void planDeepSeekAttention(const ModelConfig& c, std::int64_t l, std::vector<PlannedTensor>& plan)
{
    auto add = [&](TensorRole role, std::vector<std::int64_t> shape) { plan.push_back({role, l, std::move(shape)}); };
    const DeepSeekAttentionConfig& a = *c.deepseek;
    if (a.qLoraRank > 0) {
        add(TensorRole::QA, {a.qLoraRank, c.hidden});
        if (a.attentionBias)
            add(TensorRole::QABias, {a.qLoraRank});
        add(TensorRole::QANorm, {a.qLoraRank});
        add(TensorRole::QB, {c.heads * a.qkHeadDim(), a.qLoraRank});
    } else {
        add(TensorRole::Q, {c.heads * a.qkHeadDim(), c.hidden});
    }
    add(TensorRole::KvA, {a.kvLoraRank + a.ropeDim, c.hidden});
    if (a.attentionBias)
        add(TensorRole::KvABias, {a.kvLoraRank + a.ropeDim});
    add(TensorRole::KvANorm, {a.kvLoraRank});
    add(TensorRole::KvB, {c.heads * (a.nopeDim + a.valueDim), a.kvLoraRank});
}

void planAttention(const ModelConfig& c, std::int64_t l, std::vector<PlannedTensor>& plan)
{
    auto add = [&](TensorRole role, std::vector<std::int64_t> shape) { plan.push_back({role, l, std::move(shape)}); };
    if (c.deepseek) {
        planDeepSeekAttention(c, l, plan);
        return;
    }
    if (!c.isMla()) {
        add(TensorRole::Q, {c.qDim(), c.hidden});
        if (c.qkvBias)
            add(TensorRole::QBias, {c.qDim()});
        add(TensorRole::K, {c.kvDim(), c.hidden});
        if (c.qkvBias)
            add(TensorRole::KBias, {c.kvDim()});
        add(TensorRole::V, {c.kvDim(), c.hidden});
        if (c.qkvBias)
            add(TensorRole::VBias, {c.kvDim()});
        if (c.qkNorm) {
            add(TensorRole::QNorm, {c.headDim});
            add(TensorRole::KNorm, {c.headDim});
        }
        return;
    }
    const MlaLayerConfig& m = c.mla->layers[static_cast<std::size_t>(l)];
    const std::int64_t ropeDims = 2 * m.ropePairs();
    const std::int64_t nopeRows = c.kvHeads * (c.headDim - ropeDims);
    add(TensorRole::Q, {c.qDim(), c.hidden});
    if (c.qkvBias)
        add(TensorRole::QBias, {c.qDim()});
    if (ropeDims > 0) {
        add(TensorRole::KRope, {c.kvHeads * ropeDims, c.hidden});
        if (c.qkvBias)
            add(TensorRole::KRopeBias, {c.kvHeads * ropeDims});
    }
    std::int64_t keyInput = c.hidden;
    std::int64_t valueInput = c.hidden;
    switch (m.method) {
    case LatentMethod::Joint:
        add(TensorRole::DownKv, {m.latentK, c.hidden});
        keyInput = valueInput = m.latentK;
        break;
    case LatentMethod::Split:
        add(TensorRole::DownK, {m.latentK, c.hidden});
        add(TensorRole::DownV, {m.latentV, c.hidden});
        keyInput = m.latentK;
        valueInput = m.latentV;
        break;
    case LatentMethod::Key:
        add(TensorRole::DownK, {m.latentK, c.hidden});
        keyInput = m.latentK;
        break;
    case LatentMethod::Value:
        add(TensorRole::DownV, {m.latentV, c.hidden});
        valueInput = m.latentV;
        break;
    case LatentMethod::None:
        break;
    }
    if (nopeRows > 0) {
        add(TensorRole::UpK, {nopeRows, keyInput});
        if (c.qkvBias)
            add(TensorRole::UpKBias, {nopeRows});
    }
    add(TensorRole::UpV, {c.kvDim(), valueInput});
    if (c.qkvBias)
        add(TensorRole::UpVBias, {c.kvDim()});
}

} // namespace

std::vector<PlannedTensor> tensorPlan(const ModelConfig& c)
{
    std::vector<PlannedTensor> plan;
    plan.push_back({TensorRole::Embedding, -1, {c.vocab, c.hidden}});
    for (std::int64_t l = 0; l < c.layers; ++l) {
        auto add = [&](TensorRole role, std::vector<std::int64_t> shape) { plan.push_back({role, l, std::move(shape)}); };
        add(TensorRole::AttnNorm, {c.hidden});
        planAttention(c, l, plan);
        add(TensorRole::O, {c.hidden, c.attentionOutputDim()});
        if (c.outputBias)
            add(TensorRole::OBias, {c.hidden});
        add(TensorRole::FfnNorm, {c.hidden});
        add(TensorRole::Gate, {c.ffn, c.hidden});
        if (c.mlpBias)
            add(TensorRole::GateBias, {c.ffn});
        add(TensorRole::Up, {c.ffn, c.hidden});
        if (c.mlpBias)
            add(TensorRole::UpBias, {c.ffn});
        add(TensorRole::Down, {c.hidden, c.ffn});
        if (c.mlpBias)
            add(TensorRole::DownBias, {c.hidden});
    }
    plan.push_back({TensorRole::OutputNorm, -1, {c.hidden}});
    if (!c.tieEmbeddings)
        plan.push_back({TensorRole::Output, -1, {c.vocab, c.hidden}});
    return plan;
}

bool isVectorRole(TensorRole role)
{
    if (role == TensorRole::OutputNorm)
        return true;
    if (role == TensorRole::Embedding || role == TensorRole::Output)
        return false;
    return slot(role).vector != nullptr;
}

Tensor modelTensor(const Model& model, TensorRole role, std::int64_t layer)
{
    switch (role) {
    case TensorRole::Embedding: return model.embedding;
    case TensorRole::Output: return model.output;
    case TensorRole::OutputNorm: return Tensor::fromVector(model.outputNorm);
    default: break;
    }
    const LayerWeights& w = model.layers.at(static_cast<std::size_t>(layer));
    const LayerSlot& s = slot(role);
    return s.matrix ? w.*(s.matrix) : Tensor::fromVector(w.*(s.vector));
}

void setModelTensor(Model& model, TensorRole role, std::int64_t layer, const Tensor& tensor)
{
    switch (role) {
    case TensorRole::Embedding: model.embedding = tensor; return;
    case TensorRole::Output: model.output = tensor; return;
    case TensorRole::OutputNorm: model.outputNorm = tensor.toVector(); return;
    default: break;
    }
    LayerWeights& w = model.layers.at(static_cast<std::size_t>(layer));
    const LayerSlot& s = slot(role);
    if (s.matrix)
        w.*(s.matrix) = tensor;
    else
        w.*(s.vector) = tensor.toVector();
}

} // namespace mla
