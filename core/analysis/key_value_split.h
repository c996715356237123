#pragma once

#include "analysis/rope_selection.h"
#include "model/model.h"
#include "numerics/decompositions.h"

namespace mla {

// One layer's key and value projections cut by a RoPE selection: the kept (rotating) key rows, the position-free
// key rows and the values, each KV head's rows in ascending dim order, heads in order (method document, section 5).
struct KeyValueSplit {
    MatrixRM kRope;  // [kvHeads * 2p, hidden]
    MatrixRM kNope;  // [kvHeads * (d_h - 2p), hidden]
    MatrixRM v;      // [kvHeads * d_h, hidden]
    VectorF kRopeBias, kNopeBias, vBias; // empty without biases
    std::vector<std::int64_t> nopeRows;  // the rows of the key projection that kNope holds, in its order
};

KeyValueSplit splitKeyValue(const ModelConfig& config, const LayerWeights& layer, const LayerPairSelection& selection);

// The query rows in the MHA2MLA order: every head's kept RoPE dims (head-major, ascending), then every head's
// position-free dims. Applied to the weight and, when present, the bias.
void reorderQuery(const ModelConfig& config, const LayerWeights& layer, const LayerPairSelection& selection,
                  MatrixRM& weight, VectorF& bias);

// [kNope; v], the joint matrix whose low rank gives the shared latent.
MatrixRM jointKeyValue(const KeyValueSplit& split);

} // namespace mla
