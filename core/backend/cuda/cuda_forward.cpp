#include "backend/cuda/cuda_forward.h"

#include "backend/cuda/cuda_kernels.cuh"
#include "util/error.h"
#include "util/mapped_file.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace mla::cuda {
namespace {

constexpr std::size_t kAlign = 256;

std::size_t alignUp(std::size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

int toInt(std::int64_t v)
{
    if (v < 0 || v > 2147483647)
        throw Error("a dimension is too large for the GPU path: " + std::to_string(v));
    return static_cast<int>(v);
}

bool forceStreaming()
{
    const char* v = std::getenv("MLA_CUDA_STREAM_WEIGHTS");
    return v && *v && std::strcmp(v, "0") != 0;
}

// An MLA layer's pre-RoPE projections rebuilt in the original head order, as numerics of the expanded form: the
// latent products are re-associated, (W_up W_down) x instead of W_up (W_down x).
struct ExpandedProjections {
    MatrixRM q, k, v;
    VectorF qBias, kBias, vBias;
};

ExpandedProjections expandLatent(const ModelConfig& c, const LayerWeights& w, const LayerAttentionPlan& plan, bool withMatrices)
{
    ExpandedProjections e;
    const std::int64_t d = c.headDim, r = 2 * plan.ropePairs, group = c.group();
    auto place = [&](std::int64_t heads, std::int64_t headGroup, const MatrixRM* ropeRows, const VectorF& ropeBias,
                     std::int64_t ropeBase, std::int64_t ropeStride, const MatrixRM* nopeRows, const VectorF& nopeBias,
                     std::int64_t nopeBase, std::int64_t nopeStride, MatrixRM& out, VectorF& bias) {
        if (withMatrices)
            out.setZero(heads * d, c.hidden);
        const bool anyBias = ropeBias.size() > 0 || nopeBias.size() > 0;
        if (anyBias)
            bias.setZero(heads * d);
        for (std::int64_t h = 0; h < heads; ++h) {
            const std::size_t kv = static_cast<std::size_t>(h / headGroup);
            const auto& ropeDims = plan.ropeDims[kv];
            const auto& nopeDims = plan.nopeDims[kv];
            for (std::size_t i = 0; i < ropeDims.size(); ++i) {
                const std::int64_t src = ropeBase + h * ropeStride + static_cast<std::int64_t>(i);
                if (withMatrices && ropeRows)
                    out.row(h * d + ropeDims[i]) = ropeRows->row(src);
                if (ropeBias.size() > 0)
                    bias(h * d + ropeDims[i]) = ropeBias(src);
            }
            for (std::size_t i = 0; i < nopeDims.size(); ++i) {
                const std::int64_t src = nopeBase + h * nopeStride + static_cast<std::int64_t>(i);
                if (withMatrices && nopeRows)
                    out.row(h * d + nopeDims[i]) = nopeRows->row(src);
                if (nopeBias.size() > 0)
                    bias(h * d + nopeDims[i]) = nopeBias(src);
            }
        }
    };
    // Queries: the reordered rows back in place (every head's RoPE block first, then every head's nope block).
    MatrixRM qReordered;
    if (withMatrices)
        qReordered = w.q.toMatrix();
    place(c.heads, group, &qReordered, w.qBias, 0, r, &qReordered, w.qBias, c.heads * r, d - r, e.q, e.qBias);
    // Keys: RoPE rows as they are, position-free rows through the latent (or straight from the hidden state).
    MatrixRM kRope, kNope;
    if (withMatrices) {
        if (r > 0)
            kRope = w.kRope.toMatrix();
        if (r < d) {
            const Tensor* down = !w.downK.empty() ? &w.downK : (!w.downKv.empty() ? &w.downKv : nullptr);
            kNope = down ? MatrixRM(w.upK.toMatrix() * down->toMatrix()) : w.upK.toMatrix();
        }
    }
    place(c.kvHeads, 1, &kRope, w.kRopeBias, 0, r, &kNope, w.upKBias, 0, d - r, e.k, e.kBias);
    // Values through the latent.
    if (withMatrices) {
        const Tensor* down = !w.downV.empty() ? &w.downV : (!w.downKv.empty() ? &w.downKv : nullptr);
        e.v = down ? MatrixRM(w.upV.toMatrix() * down->toMatrix()) : w.upV.toMatrix();
    }
    e.vBias = w.upVBias;
    return e;
}

void hashBytes(std::uint64_t& h, const void* data, std::size_t bytes)
{
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
}

std::vector<const void*> modelKey(const Model& m)
{
    std::vector<const void*> key{m.embedding.data(), m.output.data()};
    std::uint64_t h = 1469598103934665603ull;
    auto mixVector = [&](const VectorF& v) {
        const std::uint64_t n = static_cast<std::uint64_t>(v.size());
        hashBytes(h, &n, sizeof n);
        hashBytes(h, v.data(), static_cast<std::size_t>(v.size()) * sizeof(float));
    };
    mixVector(m.outputNorm);
    for (const auto& w : m.layers) {
        for (const Tensor* t : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down, &w.kRope, &w.downKv, &w.downK, &w.downV, &w.upK, &w.upV})
            key.push_back(t->data());
        for (const VectorF* v : {&w.attnNorm, &w.ffnNorm, &w.qBias, &w.kBias, &w.vBias, &w.oBias, &w.qNorm, &w.kNorm, &w.gateBias,
                                 &w.upBias, &w.downBias, &w.kRopeBias, &w.upKBias, &w.upVBias})
            mixVector(*v);
    }
    const std::string config = configToHuggingFace(m.config).dump();
    hashBytes(h, config.data(), config.size());
    key.push_back(reinterpret_cast<const void*>(static_cast<std::uintptr_t>(h)));
    return key;
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------------
// DeviceModel

struct MatrixField {
    DType dtype = DType::F32;
    std::int64_t rows = 0, cols = 0;
    std::size_t offset = 0;
    const Tensor* source = nullptr; // null: materialised (MLA q/k/v)
    std::size_t bytes() const { return static_cast<std::size_t>(rows * cols) * dtypeSize(dtype); }
};

struct VectorField {
    std::size_t offset = 0;
    std::int64_t size = 0;
    const float* source = nullptr;
};

struct DeviceModel::Layout {
    MatrixField q, k, v, o, gate, up, down;
    VectorField attnNorm, ffnNorm, qBias, kBias, vBias, oBias, qNorm, kNorm, gateBias, upBias, downBias;
    std::vector<int> pairIndex;
    std::vector<float> freqs;
    std::size_t pairOffset = 0, freqOffset = 0;
    std::int64_t pairCount = 0;
    bool latent = false;
    VectorF expandedQBias, expandedKBias, expandedVBias; // MLA: biases in the original order
    std::size_t bytes = 0;
};

struct DeviceModel::Slot {
    PinnedBuffer pinned;
    DeviceBuffer<std::byte> device;
    cudaEvent_t copied = nullptr;
    cudaEvent_t consumed = nullptr;
    std::int64_t layer = -1;
};

DeviceModel::DeviceModel(Context& ctx, const Transformer& transformer)
    : m_ctx(ctx), m_model(transformer.model()), m_key(modelKey(transformer.model()))
{
    m_transformer = std::make_unique<Transformer>(m_model, transformer.form());
    const ModelConfig& c = m_model.config;
    const auto& plans = m_transformer->plans();
    m_layouts.resize(static_cast<std::size_t>(c.layers));
    std::size_t total = 0, largest = 0;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerWeights& w = m_model.layers[static_cast<std::size_t>(l)];
        const LayerAttentionPlan& plan = plans[static_cast<std::size_t>(l)];
        Layout& L = m_layouts[static_cast<std::size_t>(l)];
        std::size_t at = 0;
        auto matrix = [&](MatrixField& f, const Tensor* t, std::int64_t rows, std::int64_t cols) {
            f.source = t;
            f.dtype = t ? t->dtype() : DType::F32;
            f.rows = rows;
            f.cols = cols;
            f.offset = at;
            at = alignUp(at + f.bytes());
        };
        auto vector = [&](VectorField& f, const VectorF& v) {
            f.size = v.size();
            f.source = v.data();
            f.offset = at;
            at = alignUp(at + static_cast<std::size_t>(v.size()) * sizeof(float));
        };
        L.latent = plan.latent;
        if (plan.latent) {
            const ExpandedProjections e = expandLatent(c, w, plan, false);
            L.expandedQBias = e.qBias;
            L.expandedKBias = e.kBias;
            L.expandedVBias = e.vBias;
            matrix(L.q, nullptr, c.qDim(), c.hidden);
            matrix(L.k, nullptr, c.kvDim(), c.hidden);
            matrix(L.v, nullptr, c.kvDim(), c.hidden);
            vector(L.qBias, L.expandedQBias);
            vector(L.kBias, L.expandedKBias);
            vector(L.vBias, L.expandedVBias);
        } else {
            matrix(L.q, &w.q, w.q.rows(), w.q.cols());
            matrix(L.k, &w.k, w.k.rows(), w.k.cols());
            matrix(L.v, &w.v, w.v.rows(), w.v.cols());
            vector(L.qBias, w.qBias);
            vector(L.kBias, w.kBias);
            vector(L.vBias, w.vBias);
            if (c.qkNorm) {
                vector(L.qNorm, w.qNorm);
                vector(L.kNorm, w.kNorm);
            }
        }
        matrix(L.o, &w.o, w.o.rows(), w.o.cols());
        matrix(L.gate, &w.gate, w.gate.rows(), w.gate.cols());
        matrix(L.up, &w.up, w.up.rows(), w.up.cols());
        matrix(L.down, &w.down, w.down.rows(), w.down.cols());
        vector(L.attnNorm, w.attnNorm);
        vector(L.ffnNorm, w.ffnNorm);
        vector(L.oBias, w.oBias);
        vector(L.gateBias, w.gateBias);
        vector(L.upBias, w.upBias);
        vector(L.downBias, w.downBias);
        L.pairCount = plan.ropePairs;
        for (std::size_t kv = 0; kv < plan.keptPairs.size(); ++kv) {
            if (static_cast<std::int64_t>(plan.keptPairs[kv].size()) != plan.ropePairs)
                throw Error("the GPU forward needs the same number of RoPE pairs in every KV head of a layer");
            L.pairIndex.insert(L.pairIndex.end(), plan.keptPairs[kv].begin(), plan.keptPairs[kv].end());
            L.freqs.insert(L.freqs.end(), plan.ropeFreqs[kv].begin(), plan.ropeFreqs[kv].end());
        }
        L.pairOffset = at;
        at = alignUp(at + L.pairIndex.size() * sizeof(int));
        L.freqOffset = at;
        at = alignUp(at + L.freqs.size() * sizeof(float));
        L.bytes = at;
        total += at;
        largest = std::max(largest, at);
    }
    const std::uint64_t head = m_model.output.bytes();
    const std::uint64_t freeBytes = m_ctx.freeMemory();
    // Resident when the weights take at most 60% of the free memory: the rest is for activations and decompositions.
    m_resident = !forceStreaming() && static_cast<double>(total + head) <= 0.6 * static_cast<double>(freeBytes);
    m_slots = std::make_unique<Slot[]>(2);
    for (int i = 0; i < 2; ++i) {
        check(cudaEventCreateWithFlags(&m_slots[i].copied, cudaEventDisableTiming), "cudaEventCreate");
        check(cudaEventCreateWithFlags(&m_slots[i].consumed, cudaEventDisableTiming), "cudaEventCreate");
        if (!m_resident)
            m_slots[i].device.reserve(std::max<std::size_t>(largest, 1));
    }
    if (m_resident) {
        m_residentLayers.resize(static_cast<std::size_t>(c.layers));
        m_residentReady.assign(static_cast<std::size_t>(c.layers), false);
    }
    m_pending.resize(static_cast<std::size_t>(c.layers));
}

DeviceModel::~DeviceModel()
{
    for (auto& f : m_pending) {
        if (f.valid()) {
            try {
                f.get();
            } catch (...) {
            }
        }
    }
    cudaStreamSynchronize(m_ctx.copy);
    cudaStreamSynchronize(m_ctx.compute);
    if (m_slots) {
        for (int i = 0; i < 2; ++i) {
            if (m_slots[i].copied)
                cudaEventDestroy(m_slots[i].copied);
            if (m_slots[i].consumed)
                cudaEventDestroy(m_slots[i].consumed);
        }
    }
}

bool DeviceModel::matches(const Transformer& transformer) const
{
    return modelKey(transformer.model()) == m_key;
}

std::uint64_t DeviceModel::layerBytes(std::int64_t layer) const
{
    return m_layouts[static_cast<std::size_t>(layer)].bytes;
}

void DeviceModel::gather(std::int64_t layer, std::byte* destination) const
{
    const Layout& L = m_layouts[static_cast<std::size_t>(layer)];
    struct Job {
        std::byte* dst;
        const void* src;
        std::size_t bytes;
    };
    std::vector<Job> jobs;
    ExpandedProjections expanded;
    if (L.latent) {
        const ModelConfig& c = m_model.config;
        expanded = expandLatent(c, m_model.layers[static_cast<std::size_t>(layer)], m_transformer->plans()[static_cast<std::size_t>(layer)], true);
        jobs.push_back({destination + L.q.offset, expanded.q.data(), L.q.bytes()});
        jobs.push_back({destination + L.k.offset, expanded.k.data(), L.k.bytes()});
        jobs.push_back({destination + L.v.offset, expanded.v.data(), L.v.bytes()});
    }
    for (const MatrixField* f : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
        if (f->source && f->rows > 0)
            jobs.push_back({destination + f->offset, f->source->data(), f->bytes()});
    }
    for (const VectorField* f : {&L.attnNorm, &L.ffnNorm, &L.qBias, &L.kBias, &L.vBias, &L.oBias, &L.qNorm, &L.kNorm, &L.gateBias,
                                 &L.upBias, &L.downBias}) {
        if (f->size > 0)
            jobs.push_back({destination + f->offset, f->source, static_cast<std::size_t>(f->size) * sizeof(float)});
    }
    if (!L.pairIndex.empty()) {
        jobs.push_back({destination + L.pairOffset, L.pairIndex.data(), L.pairIndex.size() * sizeof(int)});
        jobs.push_back({destination + L.freqOffset, L.freqs.data(), L.freqs.size() * sizeof(float)});
    }
    // Split into pieces of at most 4 MiB so that all cores fault the memory-mapped weights in together.
    constexpr std::size_t piece = std::size_t(4) << 20;
    std::vector<Job> pieces;
    for (const Job& j : jobs) {
        for (std::size_t at = 0; at < j.bytes; at += piece)
            pieces.push_back({j.dst + at, static_cast<const std::byte*>(j.src) + at, std::min(piece, j.bytes - at)});
    }
    const std::int64_t count = static_cast<std::int64_t>(pieces.size());
#pragma omp parallel for schedule(dynamic)
    for (std::int64_t i = 0; i < count; ++i)
        std::memcpy(pieces[static_cast<std::size_t>(i)].dst, pieces[static_cast<std::size_t>(i)].src, pieces[static_cast<std::size_t>(i)].bytes);
    // The layer now lives in the staging buffer (and on the device): its memory-mapped pages are dropped from resident
    // memory, as the CPU converter does, so that calibrating a 7B model does not hold the whole checkpoint resident.
    for (const Job& j : jobs)
        MappedFile::releasePages(j.src, j.bytes);
}

void DeviceModel::upload(std::int64_t layer)
{
    Slot& s = m_slots[layer % 2];
    const std::size_t bytes = m_layouts[static_cast<std::size_t>(layer)].bytes;
    check(cudaEventSynchronize(s.copied), "cudaEventSynchronize"); // the staging buffer's last copy is done
    auto* pinned = static_cast<std::byte*>(s.pinned.reserve(std::max<std::size_t>(bytes, 1)));
    gather(layer, pinned);
    std::byte* destination = nullptr;
    if (m_resident) {
        destination = m_residentLayers[static_cast<std::size_t>(layer)].reserve(std::max<std::size_t>(bytes, 1));
    } else {
        check(cudaStreamWaitEvent(m_ctx.copy, s.consumed, 0), "cudaStreamWaitEvent"); // the slot's last layer is done
        destination = s.device.data();
    }
    check(cudaMemcpyAsync(destination, pinned, bytes, cudaMemcpyHostToDevice, m_ctx.copy), "cudaMemcpyAsync (weights)");
    check(cudaEventRecord(s.copied, m_ctx.copy), "cudaEventRecord");
    s.layer = layer;
}

void DeviceModel::prefetch(std::int64_t layer)
{
    if (layer < 0 || layer >= m_model.config.layers)
        return;
    auto& pending = m_pending[static_cast<std::size_t>(layer)];
    if (pending.valid())
        return;
    if (m_resident ? m_residentLayers[static_cast<std::size_t>(layer)].data() != nullptr : m_slots[layer % 2].layer == layer)
        return;
    pending = std::async(std::launch::async, [this, layer] {
        check(cudaSetDevice(m_ctx.device), "cudaSetDevice");
        upload(layer);
    });
}

DeviceLayer DeviceModel::acquire(std::int64_t layer)
{
    auto& pending = m_pending[static_cast<std::size_t>(layer)];
    if (pending.valid())
        pending.get();
    Slot& s = m_slots[layer % 2];
    if (m_resident) {
        const std::size_t l = static_cast<std::size_t>(layer);
        if (!m_residentLayers[l].data())
            upload(layer);
        if (!m_residentReady[l]) {
            check(cudaStreamWaitEvent(m_ctx.compute, s.copied, 0), "cudaStreamWaitEvent");
            m_residentReady[l] = true;
        }
        return view(layer, m_residentLayers[l].data());
    }
    if (s.layer != layer)
        upload(layer);
    check(cudaStreamWaitEvent(m_ctx.compute, s.copied, 0), "cudaStreamWaitEvent");
    return view(layer, s.device.data());
}

void DeviceModel::release(std::int64_t layer)
{
    check(cudaEventRecord(m_slots[layer % 2].consumed, m_ctx.compute), "cudaEventRecord");
}

DeviceLayer DeviceModel::view(std::int64_t layer, const std::byte* base) const
{
    const Layout& L = m_layouts[static_cast<std::size_t>(layer)];
    DeviceLayer d;
    auto matrix = [&](const MatrixField& f) {
        DeviceMatrix m;
        m.dtype = f.dtype;
        m.rows = f.rows;
        m.cols = f.cols;
        m.data = f.rows > 0 ? base + f.offset : nullptr;
        return m;
    };
    auto vector = [&](const VectorField& f) { return f.size > 0 ? reinterpret_cast<const float*>(base + f.offset) : nullptr; };
    d.q = matrix(L.q);
    d.k = matrix(L.k);
    d.v = matrix(L.v);
    d.o = matrix(L.o);
    d.gate = matrix(L.gate);
    d.up = matrix(L.up);
    d.down = matrix(L.down);
    d.attnNorm = vector(L.attnNorm);
    d.ffnNorm = vector(L.ffnNorm);
    d.qBias = vector(L.qBias);
    d.kBias = vector(L.kBias);
    d.vBias = vector(L.vBias);
    d.oBias = vector(L.oBias);
    d.qNorm = vector(L.qNorm);
    d.kNorm = vector(L.kNorm);
    d.gateBias = vector(L.gateBias);
    d.upBias = vector(L.upBias);
    d.downBias = vector(L.downBias);
    d.pairCount = L.pairIndex.empty() ? 0 : L.pairCount;
    d.pairIndex = L.pairIndex.empty() ? nullptr : reinterpret_cast<const int*>(base + L.pairOffset);
    d.ropeFreqs = L.pairIndex.empty() ? nullptr : reinterpret_cast<const float*>(base + L.freqOffset);
    return d;
}

const float* DeviceModel::outputNorm()
{
    if (!m_outputNorm.data()) {
        const VectorF& n = m_model.outputNorm;
        m_outputNorm.reserve(static_cast<std::size_t>(std::max<Eigen::Index>(n.size(), 1)));
        ::mla::cuda::upload(m_ctx, m_outputNorm.data(), n.data(), static_cast<std::size_t>(n.size()) * sizeof(float));
    }
    return m_outputNorm.data();
}

DeviceMatrix DeviceModel::outputHead()
{
    const Tensor& t = m_model.output;
    if (!m_outputHead.data()) {
        m_outputHead.reserve(std::max<std::size_t>(t.bytes(), 1));
        ::mla::cuda::upload(m_ctx, m_outputHead.data(), t.data(), t.bytes());
    }
    DeviceMatrix m;
    m.dtype = t.dtype();
    m.rows = t.rows();
    m.cols = t.cols();
    m.data = m_outputHead.data();
    return m;
}

// ---------------------------------------------------------------------------------------------------------------------
// Statistics

void DeviceStatistics::reset(const Context& ctx, const ModelConfig& c, bool inputGram)
{
    const std::int64_t pairs = c.headDim / 2;
    auto zero = [&](DeviceBuffer<double>& b, std::int64_t n) {
        b.reserve(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
        check(cudaMemsetAsync(b.data(), 0, static_cast<std::size_t>(n) * sizeof(double), ctx.compute), "cudaMemset");
    };
    zero(qNorm, c.heads * pairs);
    zero(qMoment, c.heads * 3 * pairs);
    zero(kNorm, c.kvHeads * pairs);
    zero(kMoment, c.kvHeads * 3 * pairs);
    gramWanted = inputGram;
    if (inputGram)
        zero(gram, c.hidden * c.hidden);
    tokens = 0;
}

void DeviceStatistics::addTo(const Context& ctx, const ModelConfig& c, LayerStatistics& stats)
{
    const std::int64_t pairs = c.headDim / 2;
    auto add = [&](const DeviceBuffer<double>& b, MatrixXdRM& into, std::int64_t rows, std::int64_t cols) {
        MatrixXdRM host(rows, cols);
        download(ctx, host.data(), b.data(), static_cast<std::size_t>(rows * cols) * sizeof(double));
        if (into.rows() != rows || into.cols() != cols)
            into = MatrixXdRM::Zero(rows, cols);
        into += host;
    };
    add(qNorm, stats.qPairNorm, c.heads, pairs);
    add(qMoment, stats.qPairMoment, c.heads, 3 * pairs);
    add(kNorm, stats.kPairNorm, c.kvHeads, pairs);
    add(kMoment, stats.kPairMoment, c.kvHeads, 3 * pairs);
    if (gramWanted) {
        // The device's G is symmetric, so its column-major image read row-major is G itself (up to rounding): it is
        // added as one contiguous pass. A strided transpose of 4096 x 4096 doubles per layer was slower than the
        // whole GPU forward (docs/benchmarks.md).
        if (stats.inputGram.rows() != c.hidden)
            stats.inputGram = MatrixXdRM::Zero(c.hidden, c.hidden);
        MatrixXdRM g(c.hidden, c.hidden);
        download(ctx, g.data(), gram.data(), static_cast<std::size_t>(g.size()) * sizeof(double));
        stats.inputGram += g;
    }
    stats.tokens += tokens;
}

// ---------------------------------------------------------------------------------------------------------------------
// Forward

void linear(Context& ctx, ForwardScratch& s, const DeviceMatrix& w, const float* bias, const float* x, std::int64_t n, float* y)
{
    if (n <= 0 || w.rows == 0)
        return;
    const int out = toInt(w.rows), in = toInt(w.cols), tokens = toInt(n);
    const float one = 1.0f, zero = 0.0f;
    if (n <= 8) {
        kernels::gemvRows(static_cast<int>(w.dtype), w.data, w.rows, w.cols, x, n, y, ctx.compute);
    } else if (w.dtype == DType::F32) {
        check(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, out, tokens, in, &one, static_cast<const float*>(w.data), in, x, in, &zero,
                          y, out),
              "cublasSgemm");
    } else if (ctx.precision == GemmPrecision::Native) {
        // Activations rounded to the weight type, FP32 accumulation: how PyTorch runs a BF16 / F16 model.
        const std::size_t count = static_cast<std::size_t>(n) * static_cast<std::size_t>(in);
        std::uint16_t* x16 = s.activations16.reserve(count);
        kernels::fromFloat(static_cast<int>(w.dtype), x, x16, static_cast<std::int64_t>(count), ctx.compute);
        const cudaDataType_t type = w.dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
        check(cublasGemmEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, out, tokens, in, &one, w.data, type, in, x16, type, in, &zero, y,
                           CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx");
    } else {
        // Weights widened to float32 (exact) in a scratch buffer, then an FP32 GEMM (TF32 when asked for).
        const std::size_t count = static_cast<std::size_t>(w.rows) * static_cast<std::size_t>(w.cols);
        float* wf = s.weight.reserve(count);
        kernels::toFloat(static_cast<int>(w.dtype), w.data, wf, static_cast<std::int64_t>(count), ctx.compute);
        check(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, out, tokens, in, &one, wf, in, x, in, &zero, y, out), "cublasSgemm");
    }
    kernels::addBias(y, bias, n, w.rows, ctx.compute);
}

namespace {

// Causal (sliding-window) attention of `count` query rows at positions firstPosition.. against keys/values rows
// [0, firstPosition + count): scores by strided-batched GEMMs per KV head (the query heads of a group stacked), the
// masked softmax, and the weighted sum; query rows are tiled so that the scores stay within a budget.
void attend(Context& ctx, ForwardScratch& s, const ModelConfig& c, const float* q, std::int64_t count, std::int64_t firstPosition,
            const float* keys, const float* values, float* context)
{
    const std::int64_t heads = c.heads, kvHeads = c.kvHeads, g = c.group(), d = c.headDim, kvDim = c.kvDim();
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    const std::int64_t total = firstPosition + count;
    constexpr std::int64_t kScoreBudget = std::int64_t(128) << 20; // floats (512 MiB)
    std::int64_t tile = std::max<std::int64_t>(1, kScoreBudget / std::max<std::int64_t>(heads * total, 1));
    tile = std::min(tile, count);
    float* qh = s.headsIn.reserve(static_cast<std::size_t>(heads * tile * d));
    float* oh = s.headsOut.reserve(static_cast<std::size_t>(heads * tile * d));
    float* scores = s.scores.reserve(static_cast<std::size_t>(heads * tile * total));
    const float one = 1.0f, zero = 0.0f;
    for (std::int64_t t0 = 0; t0 < count; t0 += tile) {
        const std::int64_t tb = std::min(tile, count - t0);
        const std::int64_t n = firstPosition + t0 + tb; // keys this tile can see (causal)
        kernels::splitHeads(q, t0, tb, heads, d, qh, ctx.compute);
        // Scores, per KV head: [n, g*tb] (column-major) = K_kv [n, d] x Q_group^T [d, g*tb].
        check(cublasSgemmStridedBatched(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, toInt(n), toInt(g * tb), toInt(d), &one, keys, toInt(kvDim), d,
                                        qh, toInt(d), g * tb * d, &zero, scores, toInt(n), g * tb * n, toInt(kvHeads)),
              "cublasSgemmStridedBatched (scores)");
        kernels::maskedSoftmax(scores, heads * tb, tb, n, firstPosition + t0, c.slidingWindow, scale, ctx.compute);
        // Context, per KV head: [d, g*tb] (column-major) = V_kv^T [d, n] x P^T [n, g*tb].
        check(cublasSgemmStridedBatched(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, toInt(d), toInt(g * tb), toInt(n), &one, values, toInt(kvDim),
                                        d, scores, toInt(n), g * tb * n, &zero, oh, toInt(d), g * tb * d, toInt(kvHeads)),
              "cublasSgemmStridedBatched (context)");
        kernels::mergeHeads(oh, t0, tb, heads, d, context, ctx.compute);
    }
}

} // namespace

void layerForward(Context& ctx, ForwardScratch& s, const ModelConfig& c, const DeviceLayer& w, float* h, std::int64_t rows,
                  const int* positions, const std::vector<Segment>& segments, DeviceStatistics* stats)
{
    (void)positions;
    if (rows <= 0)
        return;
    const std::int64_t hidden = c.hidden, qDim = c.qDim(), kvDim = c.kvDim(), d = c.headDim;
    const float eps = static_cast<float>(c.rmsEps);
    cudaStream_t stream = ctx.compute;
    float* xn = s.xn.reserve(static_cast<std::size_t>(rows * hidden));
    kernels::rmsNormRows(h, w.attnNorm, eps, xn, rows, hidden, stream);
    if (stats && stats->gramWanted) {
        double* xd = s.widened.reserve(static_cast<std::size_t>(rows * hidden));
        kernels::floatToDouble(xn, xd, rows * hidden, stream);
        const double one = 1.0;
        // G += X^T X: row-major X [rows, hidden] is column-major X^T (hidden x rows). A full DGEMM, not DSYRK: cuBLAS's
        // DSYRK ran about 50 times slower on an H100 (docs/benchmarks.md) and made the Gram 98% of the calibration time.
        check(cublasDgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_T, toInt(hidden), toInt(hidden), toInt(rows), &one, xd, toInt(hidden), xd,
                          toInt(hidden), &one, stats->gram.data(), toInt(hidden)),
              "cublasDgemm (input Gram)");
    }
    float* q = s.q.reserve(static_cast<std::size_t>(rows * qDim));
    float* k = s.k.reserve(static_cast<std::size_t>(rows * kvDim));
    float* v = s.v.reserve(static_cast<std::size_t>(rows * kvDim));
    linear(ctx, s, w.q, w.qBias, xn, rows, q);
    linear(ctx, s, w.k, w.kBias, xn, rows, k);
    linear(ctx, s, w.v, w.vBias, xn, rows, v);
    if (w.qNorm)
        kernels::rmsNormBlocks(q, w.qNorm, eps, rows, qDim, d, stream);
    if (w.kNorm)
        kernels::rmsNormBlocks(k, w.kNorm, eps, rows, kvDim, d, stream);
    if (stats) {
        kernels::pairStatistics(q, rows, c.heads, d, stats->qNorm.data(), stats->qMoment.data(), stream);
        kernels::pairStatistics(k, rows, c.kvHeads, d, stats->kNorm.data(), stats->kMoment.data(), stream);
        stats->tokens += rows;
    }
    float* context = s.context.reserve(static_cast<std::size_t>(rows * qDim));
    for (const Segment& seg : segments) {
        float* qs = q + seg.row0 * qDim;
        float* ks = k + seg.row0 * kvDim;
        float* vs = v + seg.row0 * kvDim;
        if (w.pairCount > 0) {
            kernels::rotate(qs, seg.count, c.heads, d, c.group(), w.pairIndex, w.ropeFreqs, w.pairCount, nullptr, seg.firstPosition, stream);
            kernels::rotate(ks, seg.count, c.kvHeads, d, 1, w.pairIndex, w.ropeFreqs, w.pairCount, nullptr, seg.firstPosition, stream);
        }
        const float* keys = ks;
        const float* values = vs;
        if (seg.keyCache) {
            const std::size_t bytes = static_cast<std::size_t>(seg.count * kvDim) * sizeof(float);
            check(cudaMemcpyAsync(seg.keyCache + seg.firstPosition * kvDim, ks, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
            check(cudaMemcpyAsync(seg.valueCache + seg.firstPosition * kvDim, vs, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
            keys = seg.keyCache;
            values = seg.valueCache;
        } else if (seg.firstPosition != 0) {
            throw Error("internal: attention without a cache must start at position 0");
        }
        attend(ctx, s, c, qs, seg.count, seg.firstPosition, keys, values, context + seg.row0 * qDim);
    }
    float* projected = s.projected.reserve(static_cast<std::size_t>(rows * hidden));
    linear(ctx, s, w.o, nullptr, context, rows, projected);
    kernels::addResidual(h, projected, w.oBias, rows, hidden, stream);

    kernels::rmsNormRows(h, w.ffnNorm, eps, xn, rows, hidden, stream);
    float* gate = s.gate.reserve(static_cast<std::size_t>(rows * c.ffn));
    float* up = s.up.reserve(static_cast<std::size_t>(rows * c.ffn));
    linear(ctx, s, w.gate, w.gateBias, xn, rows, gate);
    linear(ctx, s, w.up, w.upBias, xn, rows, up);
    kernels::swiGlu(gate, up, rows * c.ffn, stream);
    linear(ctx, s, w.down, nullptr, gate, rows, projected);
    kernels::addResidual(h, projected, w.downBias, rows, hidden, stream);
}

void logitsForward(Context& ctx, ForwardScratch& s, DeviceModel& model, const float* h, std::int64_t rows, float* logits)
{
    const ModelConfig& c = model.config();
    float* xn = s.xn.reserve(static_cast<std::size_t>(rows * c.hidden));
    kernels::rmsNormRows(h, model.outputNorm(), static_cast<float>(c.rmsEps), xn, rows, c.hidden, ctx.compute);
    linear(ctx, s, model.outputHead(), nullptr, xn, rows, logits);
}

} // namespace mla::cuda
