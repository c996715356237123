#include "model/model.h"

namespace mla {
namespace {

std::int64_t count(const Tensor& t) { return t.empty() ? 0 : t.numel(); }
std::int64_t bytes(const Tensor& t) { return t.empty() ? 0 : static_cast<std::int64_t>(t.bytes()); }

template <typename F>
void forEachMatrix(const LayerWeights& w, F f)
{
    for (const Tensor* t : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down, &w.kRope, &w.downKv, &w.downK, &w.downV, &w.upK, &w.upV,
                            &w.qA, &w.qB, &w.kvA, &w.kvB})
        f(*t);
}

std::int64_t vectorCount(const LayerWeights& w)
{
    std::int64_t n = 0;
    for (const VectorF* v : {&w.attnNorm, &w.qBias, &w.kBias, &w.vBias, &w.oBias, &w.qNorm, &w.kNorm, &w.ffnNorm,
                             &w.gateBias, &w.upBias, &w.downBias, &w.kRopeBias, &w.upKBias, &w.upVBias, &w.qABias,
                             &w.qANorm, &w.kvABias, &w.kvANorm})
        n += v->size();
    return n;
}

} // namespace

std::int64_t LayerWeights::parameterCount() const
{
    std::int64_t n = vectorCount(*this);
    forEachMatrix(*this, [&](const Tensor& t) { n += count(t); });
    return n;
}

std::int64_t Model::parameterCount() const
{
    std::int64_t n = count(embedding) + outputNorm.size();
    if (!config.tieEmbeddings)
        n += count(output);
    for (const auto& l : layers)
        n += l.parameterCount();
    return n;
}

std::int64_t Model::weightBytes() const
{
    std::int64_t n = bytes(embedding) + outputNorm.size() * 4;
    if (!config.tieEmbeddings)
        n += bytes(output);
    for (const auto& l : layers) {
        n += vectorCount(l) * 4;
        forEachMatrix(l, [&](const Tensor& t) { n += bytes(t); });
    }
    return n;
}

} // namespace mla
