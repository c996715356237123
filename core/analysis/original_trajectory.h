#pragma once

#include "engine/transformer.h"

#include <cstdint>
#include <span>
#include <vector>

namespace mla {

// The original model's hidden states entering each layer (the residual stream) on the calibration sequences, kept by
// a conversion's first pass over them (its calibration, or the allocation when the analysis was made earlier) so that
// its later passes over the same tokens (the allocation, the sequential conversion) read them instead of running the
// original model's layers again: each of those passes would otherwise repeat the original's attention and
// feed-forward blocks, most of a forward pass per layer. Kept from layer 1 on (layer 0's inputs are the embeddings)
// while they fit under a byte cap; the passes recompute what is not kept.
class OriginalTrajectory {
public:
    explicit OriginalTrajectory(std::uint64_t byteCap = 0) : m_cap(byteCap) {}

    // Starts over for these calibration sequences of a model of `layers` layers, keeping nothing.
    void start(std::vector<std::vector<int>> sequences, std::int64_t layers);
    // Whether layer `layer`'s inputs of `hiddenWidth` would be kept: a layer of the model, every layer from 1 up to
    // it kept so far and the bytes within the cap.
    bool wants(std::int64_t layer, std::int64_t hiddenWidth) const;
    // Keeps `hidden` ([T_i, hidden] per sequence, in the order of the sequences) as layer `layer`'s inputs; only when
    // wants() says so (else an internal error).
    void keep(std::int64_t layer, std::vector<MatrixRM> hidden);

    // Layer `layer`'s inputs, or null when they were not kept.
    const std::vector<MatrixRM>* inputs(std::int64_t layer) const;
    // Whether the trajectory holds the first `count` sequences of `sequences` exactly (so their rows are the ones kept).
    bool covers(const std::vector<std::vector<int>>& sequences, std::size_t count) const;

    std::int64_t keptLayers() const { return static_cast<std::int64_t>(m_layers.size()); }
    std::size_t sequences() const { return m_sequences.size(); }
    std::uint64_t bytes() const { return m_bytes; }
    std::uint64_t cap() const { return m_cap; }

    // The cap a conversion uses: a third of the original model's size (`modelBytes`), at most a quarter of the memory
    // this process may still allocate. Per layer the trajectory holds tokens x hidden floats: a 7B model's 4096
    // calibration tokens fit whole (2 GiB against 13 GiB of BF16 weights), while a small model with a large
    // vocabulary keeps its first layers and recomputes the rest, so that a conversion's peak memory stays within
    // 1.5x of the paper preset's (docs/benchmarks.md).
    static std::uint64_t defaultCap(std::uint64_t modelBytes);
    // Bytes of one layer's inputs: `tokens` rows of `hiddenWidth` floats.
    static std::uint64_t layerBytes(std::int64_t tokens, std::int64_t hiddenWidth);

private:
    std::uint64_t m_cap = 0;
    std::uint64_t m_bytes = 0;
    std::int64_t m_tokens = 0;
    std::int64_t m_modelLayers = 0;
    std::vector<std::vector<int>> m_sequences;
    std::vector<std::vector<MatrixRM>> m_layers; // m_layers[i]: layer i + 1's inputs
};

// Walks the original model's layer inputs in order, on the first `count` calibration sequences: from the trajectory
// where it kept them (when it covers those sequences), else by running the layer's feed-forward block on the attention
// outputs the caller computed for its own use. Either way the inputs are the original model's, bit for bit on the CPU.
class OriginalLayerInputs {
public:
    OriginalLayerInputs(const Transformer& model, const std::vector<std::vector<int>>& sequences, std::size_t count,
                        const OriginalTrajectory* kept);
    // From now on the inputs computed are kept in `keep` as far as it wants them (a later pass reads them), when the
    // walk covers every sequence `keep` was started with.
    void keepComputedIn(OriginalTrajectory* keep);

    std::int64_t layer() const { return m_layer; }
    // The inputs of layer(), per sequence.
    std::span<const MatrixRM> current() const;
    // Moves to the next layer. `layerModel` holds this layer (a one-layer model: its layer 0) and `attentionOutputs`
    // are its attention outputs (o_proj applied) on current(): the feed-forward block runs on them only when the
    // trajectory does not hold the next layer's inputs.
    void advance(const Transformer& layerModel, const std::vector<MatrixRM>& attentionOutputs);
    // Whether advance() will read the next layer's inputs from the trajectory, so that it does not look at the
    // attention outputs (a caller may then leave those it needs for nothing else uncomputed, as empty matrices).
    bool readsNext() const { return m_kept && m_kept->inputs(m_layer + 1) != nullptr; }
    // Layers advanced from the trajectory rather than computed (for tests and reports).
    std::int64_t layersRead() const { return m_read; }

private:
    const OriginalTrajectory* m_kept = nullptr;
    OriginalTrajectory* m_keep = nullptr;
    const std::vector<std::vector<int>>* m_sequences = nullptr;
    std::size_t m_count = 0;
    std::int64_t m_layer = 0;
    std::int64_t m_read = 0;
    std::vector<MatrixRM> m_own;                 // used when current() is not the trajectory's
    const std::vector<MatrixRM>* m_from = nullptr; // the trajectory's inputs of this layer, else null
};

} // namespace mla
