#include "analysis/key_value_split.h"

#include "engine/attention_plan.h"

namespace mla {
namespace {

MatrixRM gatherRows(const MatrixRM& m, const std::vector<std::int64_t>& rows)
{
    MatrixRM out(static_cast<Eigen::Index>(rows.size()), m.cols());
    for (std::size_t i = 0; i < rows.size(); ++i)
        out.row(static_cast<Eigen::Index>(i)) = m.row(rows[i]);
    return out;
}

VectorF gather(const VectorF& v, const std::vector<std::int64_t>& rows)
{
    if (v.size() == 0)
        return VectorF();
    VectorF out(static_cast<Eigen::Index>(rows.size()));
    for (std::size_t i = 0; i < rows.size(); ++i)
        out[static_cast<Eigen::Index>(i)] = v[rows[i]];
    return out;
}

} // namespace

KeyValueSplit splitKeyValue(const ModelConfig& c, const LayerWeights& layer, const LayerPairSelection& selection)
{
    std::vector<std::int64_t> ropeRows, nopeRows;
    for (std::int64_t kv = 0; kv < c.kvHeads; ++kv) {
        for (auto d : ropeBlockDims(selection[static_cast<std::size_t>(kv)], c.headDim))
            ropeRows.push_back(kv * c.headDim + d);
        for (auto d : nopeBlockDims(selection[static_cast<std::size_t>(kv)], c.headDim))
            nopeRows.push_back(kv * c.headDim + d);
    }
    const MatrixRM k = layer.k.toMatrix();
    KeyValueSplit s;
    s.kRope = gatherRows(k, ropeRows);
    s.kNope = gatherRows(k, nopeRows);
    s.v = layer.v.toMatrix();
    s.kRopeBias = gather(layer.kBias, ropeRows);
    s.kNopeBias = gather(layer.kBias, nopeRows);
    s.vBias = layer.vBias;
    s.nopeRows = std::move(nopeRows);
    return s;
}

void reorderQuery(const ModelConfig& c, const LayerWeights& layer, const LayerPairSelection& selection, MatrixRM& weight,
                  VectorF& bias)
{
    std::vector<std::int64_t> rows;
    for (std::int64_t h = 0; h < c.heads; ++h) {
        for (auto d : ropeBlockDims(selection[static_cast<std::size_t>(h / c.group())], c.headDim))
            rows.push_back(h * c.headDim + d);
    }
    for (std::int64_t h = 0; h < c.heads; ++h) {
        for (auto d : nopeBlockDims(selection[static_cast<std::size_t>(h / c.group())], c.headDim))
            rows.push_back(h * c.headDim + d);
    }
    weight = gatherRows(layer.q.toMatrix(), rows);
    bias = gather(layer.qBias, rows);
}

MatrixRM jointKeyValue(const KeyValueSplit& s)
{
    MatrixRM m(s.kNope.rows() + s.v.rows(), s.v.cols());
    m.topRows(s.kNope.rows()) = s.kNope;
    m.bottomRows(s.v.rows()) = s.v;
    return m;
}

} // namespace mla
