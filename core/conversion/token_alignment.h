#pragma once

#include <cstdint>
#include <span>
#include <vector>

// A token-level diff of two generations (the sanity check's original and converted continuations): a longest common
// subsequence, so one token inserted or dropped by one model marks that token, not everything after it.
namespace mla {

enum class AlignOp {
    Same,       // both sequences have this token here
    Changed,    // each has a token the other lacks, at the same place between two common tokens
    OnlyFirst,  // a token only the first sequence has (dropped by the second)
    OnlySecond, // a token only the second sequence has (inserted)
};

struct AlignedToken {
    AlignOp op = AlignOp::Same;
    std::int64_t first = -1;  // index into the first sequence, -1 for OnlySecond
    std::int64_t second = -1; // index into the second sequence, -1 for OnlyFirst
};

// The rows of an alignment, in order: every index of both sequences appears exactly once, the Same rows are a longest
// common subsequence, and between two Same rows the tokens each side lacks are paired as Changed (first with first),
// the surplus of the longer side following as OnlyFirst / OnlySecond.
//
// Memory is bounded: after the common prefix and suffix are set aside, the table of the middle has at most
// kMaxAlignmentCells cells (two bytes each); a longer middle is aligned position by position instead (`exact` false).
inline constexpr std::int64_t kMaxAlignmentCells = std::int64_t{1} << 24; // 4096 x 4096 tokens, 32 MiB

struct TokenAlignment {
    std::vector<AlignedToken> rows;
    std::int64_t common = 0; // Same rows
    bool exact = true;       // false when the middle was too long for the table
};

TokenAlignment alignTokens(std::span<const int> first, std::span<const int> second);

} // namespace mla
