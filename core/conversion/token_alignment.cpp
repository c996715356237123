#include "conversion/token_alignment.h"

#include <algorithm>
#include <cstddef>

namespace mla {
namespace {

// Appends the rows of a gap between two common tokens: `a` tokens only in the first, `b` only in the second.
void appendGap(std::vector<AlignedToken>& rows, std::int64_t firstStart, std::int64_t a, std::int64_t secondStart, std::int64_t b)
{
    const std::int64_t paired = std::min(a, b);
    for (std::int64_t k = 0; k < paired; ++k)
        rows.push_back({AlignOp::Changed, firstStart + k, secondStart + k});
    for (std::int64_t k = paired; k < a; ++k)
        rows.push_back({AlignOp::OnlyFirst, firstStart + k, -1});
    for (std::int64_t k = paired; k < b; ++k)
        rows.push_back({AlignOp::OnlySecond, -1, secondStart + k});
}

} // namespace

TokenAlignment alignTokens(std::span<const int> first, std::span<const int> second)
{
    TokenAlignment out;
    const auto n = static_cast<std::int64_t>(first.size());
    const auto m = static_cast<std::int64_t>(second.size());
    std::int64_t prefix = 0;
    while (prefix < n && prefix < m && first[static_cast<std::size_t>(prefix)] == second[static_cast<std::size_t>(prefix)])
        ++prefix;
    std::int64_t suffix = 0;
    while (suffix < n - prefix && suffix < m - prefix
           && first[static_cast<std::size_t>(n - 1 - suffix)] == second[static_cast<std::size_t>(m - 1 - suffix)])
        ++suffix;
    for (std::int64_t i = 0; i < prefix; ++i)
        out.rows.push_back({AlignOp::Same, i, i});

    // The middle: first[prefix, n - suffix) against second[prefix, m - suffix).
    const std::int64_t a = n - prefix - suffix;
    const std::int64_t b = m - prefix - suffix;
    std::int64_t middleCommon = 0;
    if (a > 0 && b > 0 && (a + 1) * (b + 1) <= kMaxAlignmentCells) {
        // lcs[i][j]: the LCS length of the suffixes first[prefix + i ...] and second[prefix + j ...] of the middle;
        // read forwards, it gives the alignment in order. At most 4096 + 1 per side, so two bytes hold any length.
        const std::int64_t width = b + 1;
        std::vector<std::uint16_t> lcs(static_cast<std::size_t>((a + 1) * width), 0);
        auto at = [&](std::int64_t i, std::int64_t j) -> std::uint16_t& { return lcs[static_cast<std::size_t>(i * width + j)]; };
        auto x = [&](std::int64_t i) { return first[static_cast<std::size_t>(prefix + i)]; };
        auto y = [&](std::int64_t j) { return second[static_cast<std::size_t>(prefix + j)]; };
        for (std::int64_t i = a - 1; i >= 0; --i)
            for (std::int64_t j = b - 1; j >= 0; --j)
                at(i, j) = x(i) == y(j) ? static_cast<std::uint16_t>(at(i + 1, j + 1) + 1) : std::max(at(i + 1, j), at(i, j + 1));
        std::int64_t i = 0, j = 0, gapI = 0, gapJ = 0;
        while (i < a && j < b) {
            if (x(i) == y(j) && at(i, j) == at(i + 1, j + 1) + 1) {
                appendGap(out.rows, prefix + gapI, i - gapI, prefix + gapJ, j - gapJ);
                out.rows.push_back({AlignOp::Same, prefix + i, prefix + j});
                ++middleCommon;
                gapI = ++i;
                gapJ = ++j;
            } else if (at(i + 1, j) >= at(i, j + 1)) {
                ++i;
            } else {
                ++j;
            }
        }
        appendGap(out.rows, prefix + gapI, a - gapI, prefix + gapJ, b - gapJ);
    } else {
        out.exact = a == 0 || b == 0; // an empty side needs no table
        if (!out.exact) {
            // Too long for the table: position by position (equal tokens at equal offsets count as common).
            const std::int64_t both = std::min(a, b);
            for (std::int64_t k = 0; k < both; ++k) {
                const bool same = first[static_cast<std::size_t>(prefix + k)] == second[static_cast<std::size_t>(prefix + k)];
                out.rows.push_back({same ? AlignOp::Same : AlignOp::Changed, prefix + k, prefix + k});
                middleCommon += same ? 1 : 0;
            }
            appendGap(out.rows, prefix + both, a - both, prefix + both, b - both);
        } else {
            appendGap(out.rows, prefix, a, prefix, b);
        }
    }
    for (std::int64_t k = 0; k < suffix; ++k)
        out.rows.push_back({AlignOp::Same, n - suffix + k, m - suffix + k});
    out.common = prefix + middleCommon + suffix;
    return out;
}

} // namespace mla
