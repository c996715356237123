#pragma once

#include "engine/cache_rows.h"
#include "engine/transformer.h"

#include <span>

namespace mla {

// One product that adds into the attention logits: queries [T, heads*width] (head-major column blocks) against the
// rows of a cache buffer. A shared buffer (a latent) is read by every head at columns [0, width); otherwise KV head k
// owns columns [k*width, (k+1)*width) and its query heads read those.
struct CacheKeyTerm {
    const MatrixRM* queries = nullptr;
    const CacheRows* cache = nullptr;
    std::int64_t width = 0;
    bool shared = false;
};

// The rows attention weights sum: per head `width` columns, shared or per KV head as above.
struct CacheValueTerm {
    const CacheRows* cache = nullptr;
    std::int64_t width = 0;
    bool shared = false;
};

// Attention of the shape's query rows over the cached positions [0, firstPosition + tokens): logits are the sum of
// the key terms, scaled, masked (causal, sliding window) and normalised per head; context [T, heads*values.width]
// is the weighted sum of the value rows. The cache is read in spans of rows, each span decoded once for all heads
// (for the latent of an absorbed MLA layer, every query head shares one read), so a quantised cache costs its own
// bytes of memory traffic, not the float32 ones. Results do not depend on the number of threads.
void attendToCache(const AttentionShape& shape, std::span<const CacheKeyTerm> keys, const CacheValueTerm& values,
                   MatrixRM& context);

} // namespace mla
