#pragma once

#include "backend/cuda/cuda_common.h"

#include <future>
#include <memory>

namespace mla::cuda {

// A weight matrix of a layer on the device, in its stored dtype.
struct DeviceMatrix {
    DType dtype = DType::F32;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    const void* data = nullptr;
    bool empty() const { return rows == 0; }
};

// One decoder layer's weights on the device, as the GPU forward runs it: an original layer, or an MLA layer in its
// expanded-equivalent form (q, k, v rebuilt as full float32 projections in the original head order; only the kept
// pairs rotate), which computes the expanded form of the CPU engine with the products re-associated.
struct DeviceLayer {
    DeviceMatrix q, k, v, o, gate, up, down;
    const float* attnNorm = nullptr;
    const float* ffnNorm = nullptr;
    const float* qBias = nullptr;
    const float* kBias = nullptr;
    const float* vBias = nullptr;
    const float* oBias = nullptr;
    const float* qNorm = nullptr; // per-head norms (qwen3); null when absent or for MLA layers (as on the CPU)
    const float* kNorm = nullptr;
    const float* gateBias = nullptr;
    const float* upBias = nullptr;
    const float* downBias = nullptr;
    const int* pairIndex = nullptr;  // [kvHeads, pairCount]
    const float* ropeFreqs = nullptr; // [kvHeads, pairCount]
    std::int64_t pairCount = 0;
};

// A model's weights for the GPU: every layer resident in device memory when the model fits (with room to spare),
// else streamed one layer at a time through two pinned staging buffers and two device slots, the next layer's copy
// overlapping the current layer's compute (docs/cuda-backend.md). Also the final norm and output head.
class DeviceModel {
public:
    DeviceModel(Context& ctx, const Transformer& transformer);
    ~DeviceModel();
    DeviceModel(const DeviceModel&) = delete;
    DeviceModel& operator=(const DeviceModel&) = delete;

    bool matches(const Transformer& transformer) const;
    const ModelConfig& config() const { return m_model.config; }
    const Transformer& transformer() const { return *m_transformer; }
    bool resident() const { return m_resident; }
    std::uint64_t layerBytes(std::int64_t layer) const;

    // The layer's weights, usable on ctx.compute from now on (waits for or performs its upload).
    DeviceLayer acquire(std::int64_t layer);
    // Starts uploading `layer` in the background (no-op when already there or in flight).
    void prefetch(std::int64_t layer);
    // The compute stream is done with `layer` once the work queued so far finishes.
    void release(std::int64_t layer);

    // Final norm and output head (uploaded on first use, then kept).
    const float* outputNorm();
    DeviceMatrix outputHead();

private:
    struct Layout;
    struct Slot;
    void upload(std::int64_t layer);
    void gather(std::int64_t layer, std::byte* destination) const;
    DeviceLayer view(std::int64_t layer, const std::byte* base) const;

    Context& m_ctx;
    Model m_model;
    std::unique_ptr<Transformer> m_transformer;
    std::vector<const void*> m_key;
    std::vector<Layout> m_layouts;
    bool m_resident = false;
    std::vector<DeviceBuffer<std::byte>> m_residentLayers;
    std::vector<bool> m_residentReady;
    std::unique_ptr<Slot[]> m_slots;
    std::vector<std::future<void>> m_pending; // per layer
    DeviceBuffer<float> m_outputNorm;
    DeviceBuffer<std::byte> m_outputHead;
};

// Scratch memory of the forward pass, grown on demand and reused.
struct ForwardScratch {
    DeviceBuffer<float> xn, q, k, v, context, projected, gate, up, headsIn, headsOut, scores, weight;
    DeviceBuffer<std::uint16_t> activations16;
    DeviceBuffer<double> widened;
};

// Statistics accumulators on the device (pre-RoPE pair norms and moments, input Gram).
struct DeviceStatistics {
    DeviceBuffer<double> qNorm, qMoment, kNorm, kMoment, gram;
    std::int64_t tokens = 0;
    bool gramWanted = false;
    void reset(const Context& ctx, const ModelConfig& c, bool inputGram);
    void addTo(const Context& ctx, const ModelConfig& c, LayerStatistics& stats);
};

// A sequence inside a batch of token rows: rows [row0, row0 + count) at positions firstPosition.., attending to the
// keys/values at `keys`/`values` rows [0, firstPosition + count) (the rows of this batch when no cache is given).
struct Segment {
    std::int64_t row0 = 0;
    std::int64_t count = 0;
    std::int64_t firstPosition = 0;
    float* keyCache = nullptr;   // [capacity, kvDim] or null
    float* valueCache = nullptr;
};

// y [n, W.rows] = x [n, W.cols] W^T (+ bias), in the context's GEMM precision.
void linear(Context& ctx, ForwardScratch& s, const DeviceMatrix& w, const float* bias, const float* x, std::int64_t n, float* y);

// One decoder layer over `rows` token rows of h (in place). `positions` (device, one per row) or the segments' first
// positions place the rows for RoPE. Accumulates statistics when `stats` is given.
void layerForward(Context& ctx, ForwardScratch& s, const ModelConfig& c, const DeviceLayer& w, float* h, std::int64_t rows,
                  const int* positions, const std::vector<Segment>& segments, DeviceStatistics* stats);

// Final norm and output head for `rows` rows of h: logits [rows, vocab] into `logits` (device).
void logitsForward(Context& ctx, ForwardScratch& s, DeviceModel& model, const float* h, std::int64_t rows, float* logits);

} // namespace mla::cuda
