#pragma once

#include "conversion/layer_converter.h"
#include "model/model.h"

#include <cstdint>
#include <vector>

namespace mla {

// How the shared-width evaluation of allocation candidates trades exactness for time.
struct CandidateErrorOptions {
    // Query rows evaluated, spread evenly over all calibration tokens (every key is still used); 0: every row. The
    // error over the rows is scaled to all rows.
    std::int64_t queryRows = 0;
    // Sequences whose rows are evaluated, spread evenly over the calibration set (0: all): the keys, latents and
    // values of a sequence cost the same however few of its rows are evaluated, so fewer sequences with more rows
    // each cost less for the same rows.
    std::int64_t sequences = 0;
    // The output error ||y - y*||^2 measured through a fixed Gaussian sketch of this many columns (an unbiased
    // estimate: E ||y G||^2 = ||y||^2 with G's entries of variance 1/sketch); 0: exact, through W_o itself.
    std::int64_t sketch = 0;
    std::uint64_t seed = 1;
};

// One layer's attention-output error for many candidates (kept pairs, latent width) without a model per candidate:
// the queries, the rotated keys and the targets are computed once for the layer; for one pair count the latent
// factors at the widest width give every narrower width as leading columns, so the scores grow width by width by a
// rank-update of the previous width's, and the values (already multiplied through W_o) likewise.
class LayerCandidateErrors {
public:
    // x: the layer's normalised attention inputs per sequence; target: the original layer's attention outputs
    // (after W_o) on them. Both are kept by reference and must outlive the object.
    LayerCandidateErrors(const ModelConfig& config, const LayerWeights& layer, const std::vector<MatrixRM>& x,
                         const std::vector<MatrixRM>& target, const CandidateErrorOptions& options);

    // Sum over the calibration tokens of ||O_candidate - O_original||^2 for each width (ascending, at most the rows
    // of `widest.downKv`), with `widest` converted at the kept pairs `kept` and the widest width.
    std::vector<double> errors(const ConvertedAttention& widest, const LayerPairSelection& kept,
                               const std::vector<std::int64_t>& widths) const;

    std::int64_t evaluatedRows() const { return m_evaluatedRows; }
    // Which of `sequences` calibration sequences the options evaluate (spread evenly): the only ones whose targets
    // are read.
    static std::vector<bool> evaluatedSequences(std::size_t sequences, const CandidateErrorOptions& options);

private:
    struct Sequence {
        std::vector<std::int64_t> rows; // evaluated query positions, ascending
        MatrixRM query;                 // [rows, qDim] pre-RoPE queries of those rows
        MatrixRM queryRotated;          // [rows, qDim] the same with every pair rotated
        MatrixRM keyRotated;            // [T, kvDim] keys with every pair rotated
        MatrixRM target;                // [rows, sketch width] the target rows, sketched
    };
    const ModelConfig& m_config;
    const LayerWeights& m_layer;
    const std::vector<MatrixRM>& m_x;
    std::vector<Sequence> m_sequences;
    std::vector<MatrixRM> m_outputPerHead; // [head] (headDim x sketch width): W_o's columns of the head, sketched
    VectorF m_outputBias;                  // sketched W_o bias (empty when none)
    std::int64_t m_evaluatedRows = 0;
    std::int64_t m_totalRows = 0;
};

// Rotates every pair of every head of `x` (heads of `headDim`, row i at position positions[i]) as the engine does.
void rotateAllPairs(MatrixRM& x, std::int64_t headDim, const std::vector<float>& freqs, const std::vector<std::int64_t>& positions);

} // namespace mla
