#pragma once

#include "engine/transformer.h"

namespace mla {

// Scales scores [T, n] by shape.scale, masks keys a query may not see (future, or outside a sliding window) and
// applies the softmax row by row.
void maskedSoftmax(MatrixRM& scores, const AttentionShape& shape);

} // namespace mla
