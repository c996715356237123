#include "engine/cache_attention.h"

#include "engine/ops.h"
#include "numerics/dense_kernels.h"
#include "util/error.h"

#include <algorithm>
#include <vector>

namespace mla {
namespace {

// Decoded rows per span: a span of the widest buffer stays within about 64 KiB (in L2 while every head reads it).
constexpr std::int64_t kSpanBytes = 64 * 1024;
// Scores and per-span partial contexts of one chunk of query rows: at most this many floats (256 MiB).
constexpr std::int64_t kChunkFloats = std::int64_t(64) << 20;
// Below this many multiply-adds a layer's attention runs on one thread (tiny models, short contexts).
constexpr std::int64_t kParallelWork = 1 << 16;

std::int64_t spanRows(std::span<const CacheKeyTerm> keys, const CacheValueTerm& values)
{
    std::int64_t widest = values.cache->width();
    for (const auto& k : keys)
        widest = std::max(widest, k.cache->width());
    return std::clamp<std::int64_t>(kSpanBytes / (4 * std::max<std::int64_t>(widest, 1)), 16, 512);
}

// Query rows [i0, i0 + tc) of every head, reorganised head-major: row h*tc + i is token i0 + i of head h. The query
// heads of one KV head are then consecutive rows.
MatrixRM headMajor(const MatrixRM& q, std::int64_t i0, std::int64_t tc, std::int64_t heads, std::int64_t width)
{
    MatrixRM out(heads * tc, width);
    for (std::int64_t h = 0; h < heads; ++h)
        out.middleRows(h * tc, tc) = q.block(i0, h * width, tc, width);
    return out;
}

void checkTerm(const CacheRows* cache, std::int64_t width, bool shared, std::int64_t kvHeads, std::int64_t needRows)
{
    if (!cache || cache->capacity() < needRows || cache->width() < (shared ? width : kvHeads * width))
        throw Error("internal: an attention term does not match its cache buffer");
}

} // namespace

void attendToCache(const AttentionShape& shape, std::span<const CacheKeyTerm> keys, const CacheValueTerm& values,
                   MatrixRM& context)
{
    const std::int64_t T = shape.tokens, H = shape.heads, g = shape.group, p0 = shape.firstPosition;
    const std::int64_t kvHeads = H / g;
    const std::int64_t n = p0 + T;
    for (const auto& k : keys) {
        checkTerm(k.cache, k.width, k.shared, kvHeads, n);
        if (!k.queries || k.queries->rows() != T || k.queries->cols() < H * k.width)
            throw Error("internal: attention queries do not match their term");
    }
    checkTerm(values.cache, values.width, values.shared, kvHeads, n);
    const std::int64_t wv = values.width;
    context.resize(T, H * wv);
    if (T == 0)
        return;

    const std::int64_t span = spanRows(keys, values);
    const std::int64_t spansAll = (n + span - 1) / span;
    const std::int64_t perRow = n + wv * spansAll;
    const std::int64_t chunk = std::clamp<std::int64_t>(kChunkFloats / std::max<std::int64_t>(H * perRow, 1), 1, T);
    std::int64_t keyWidth = 0;
    for (const auto& k : keys)
        keyWidth += k.width;

    for (std::int64_t i0 = 0; i0 < T; i0 += chunk) {
        const std::int64_t tc = std::min(chunk, T - i0);
        const std::int64_t R = H * tc;
        const std::int64_t end = p0 + i0 + tc; // keys the chunk's last row sees
        const std::int64_t begin = shape.slidingWindow > 0 ? std::max<std::int64_t>(0, p0 + i0 + 1 - shape.slidingWindow) : 0;
        const std::int64_t count = end - begin;
        const std::int64_t spans = (count + span - 1) / span;
        std::vector<MatrixRM> q;
        for (const auto& k : keys)
            q.push_back(headMajor(*k.queries, i0, tc, H, k.width));
        const bool parallel = spans > 1 && R * count * (keyWidth + wv) > kParallelWork;

        MatrixRM scores(R, count);
#pragma omp parallel if (parallel)
        {
            std::vector<float> scratch;
#pragma omp for schedule(static)
            for (std::int64_t s = 0; s < spans; ++s) {
                const std::int64_t b0 = begin + s * span, nb = std::min(span, end - b0), c0 = b0 - begin;
                auto block = scores.middleCols(c0, nb);
                block.setZero();
                for (std::size_t j = 0; j < keys.size(); ++j) {
                    const CacheKeyTerm& k = keys[j];
                    const std::int64_t W = k.cache->width(), w = k.width;
                    const Eigen::Map<const MatrixRM> rows(k.cache->rowsAsFloat(b0, nb, scratch), nb, W);
                    if (k.shared) {
                        productRowMajor(block, q[j], Op::None, rows.leftCols(w), Op::Transpose, 1.0f);
                    } else {
                        for (std::int64_t kv = 0; kv < kvHeads; ++kv)
                            productRowMajor(scores.block(kv * g * tc, c0, g * tc, nb), q[j].middleRows(kv * g * tc, g * tc), Op::None,
                                            rows.middleCols(kv * w, w), Op::Transpose, 1.0f);
                    }
                }
            }
        }

        scores *= shape.scale;
        std::vector<std::int64_t> rowBegin(static_cast<std::size_t>(R)), rowEnd(static_cast<std::size_t>(R));
        for (std::int64_t h = 0; h < H; ++h) {
            for (std::int64_t i = 0; i < tc; ++i) {
                const std::int64_t position = p0 + i0 + i;
                const std::int64_t first = shape.slidingWindow > 0 ? std::max<std::int64_t>(0, position + 1 - shape.slidingWindow) : 0;
                rowBegin[static_cast<std::size_t>(h * tc + i)] = first - begin;
                rowEnd[static_cast<std::size_t>(h * tc + i)] = position + 1 - begin;
            }
        }
        softmaxRowsInPlace(scores.data(), R, count, rowBegin.data(), rowEnd.data());

        // Each span's weighted rows into its own partial sum, added in span order afterwards: the same additions in
        // the same order whatever the number of threads.
        std::vector<MatrixRM> partial(static_cast<std::size_t>(spans));
#pragma omp parallel if (parallel)
        {
            std::vector<float> scratch;
#pragma omp for schedule(static)
            for (std::int64_t s = 0; s < spans; ++s) {
                const std::int64_t b0 = begin + s * span, nb = std::min(span, end - b0), c0 = b0 - begin;
                const std::int64_t W = values.cache->width();
                const Eigen::Map<const MatrixRM> rows(values.cache->rowsAsFloat(b0, nb, scratch), nb, W);
                MatrixRM& out = partial[static_cast<std::size_t>(s)];
                out.resize(R, wv);
                if (values.shared) {
                    productRowMajor(out, scores.middleCols(c0, nb), Op::None, rows.leftCols(wv), Op::None, 0.0f);
                } else {
                    for (std::int64_t kv = 0; kv < kvHeads; ++kv)
                        productRowMajor(out.middleRows(kv * g * tc, g * tc), scores.block(kv * g * tc, c0, g * tc, nb), Op::None,
                                        rows.middleCols(kv * wv, wv), Op::None, 0.0f);
                }
            }
        }
        MatrixRM sum = std::move(partial[0]);
        for (std::size_t s = 1; s < partial.size(); ++s)
            sum += partial[s];
        for (std::int64_t h = 0; h < H; ++h)
            context.block(i0, h * wv, tc, wv) = sum.middleRows(h * tc, tc);
    }
}

} // namespace mla
