// The CUDA implementation of ComputeBackend (docs/cuda-backend.md): calibration forward passes and incremental
// decoding on the GPU (cuda_forward), Gram matrices, eigen-decompositions, low-rank factors and conversion products
// with cuBLAS / cuSOLVER (cuda_linalg). One context per GPU; every call holds its mutex and makes its GPU current
// (ContextLock), so the backend may be used from any thread (calls are serialised).
#include "backend/cuda/cuda_entry.h"

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_forward.h"
#include "backend/cuda/cuda_linalg.h"
#include "util/error.h"

#include <algorithm>
#include <list>
#include <mutex>

namespace mla::cuda {
namespace {

class CudaBackend;

// Token rows a batch of calibration sequences may occupy at once: activations of one layer take about
// 4 (3 hidden + 2 q + 2 kv + 2 ffn) + 8 hidden bytes per token.
std::int64_t chunkTokens(const Context& ctx, const ModelConfig& c)
{
    const double perToken = 4.0 * static_cast<double>(3 * c.hidden + 2 * c.qDim() + 2 * c.kvDim() + 2 * c.ffn) + 8.0 * c.hidden;
    const double budget = 0.25 * static_cast<double>(ctx.freeMemory());
    return std::clamp<std::int64_t>(static_cast<std::int64_t>(budget / perToken), 1, 65536);
}

class CudaLayerRunner final : public LayerBatchRunner {
public:
    CudaLayerRunner(const CudaBackend& backend, std::shared_ptr<DeviceModel> model, const TokenSequences& sequences);
    void runLayer(std::int64_t layer, const StatisticsOptions& options, LayerStatistics* stats, const JobControl& job) override;
    std::vector<MatrixRM> hiddenStates() const override;

private:
    const CudaBackend& m_backend;
    std::shared_ptr<DeviceModel> m_model;
    std::vector<std::int64_t> m_offsets; // first token row of each sequence
    std::vector<std::int64_t> m_lengths;
    std::vector<std::pair<std::size_t, std::size_t>> m_chunks; // [first, last) sequences
    bool m_onDevice = false;
    DeviceBuffer<float> m_hidden;   // all sequences (on device) or one chunk (staging)
    std::vector<MatrixRM> m_host;   // when not on device
    DeviceStatistics m_stats;
};

class CudaDecoderSession final : public DecoderSession {
public:
    CudaDecoderSession(const CudaBackend& backend, std::shared_ptr<DeviceModel> model, std::int64_t capacity);
    MatrixRM forward(std::span<const int> tokens, Logits logits) override;
    void reset() override { m_length = 0; }
    std::int64_t length() const override { return m_length; }
    std::int64_t capacity() const override { return m_capacity; }
    double kvBytesPerToken() const override;
    std::int64_t kvElementsPerToken() const override;

private:
    const CudaBackend& m_backend;
    std::shared_ptr<DeviceModel> m_model;
    std::int64_t m_capacity = 0;
    std::int64_t m_length = 0;
    std::vector<DeviceBuffer<float>> m_keys, m_values;
    DeviceBuffer<float> m_hidden, m_logits;
};

class CudaBackend final : public ComputeBackend {
public:
    explicit CudaBackend(std::unique_ptr<Context> ctx) : m_ctx(std::move(ctx)), m_linalg(*m_ctx) {}

    Context& context() const { return *m_ctx; }
    ForwardScratch& scratch() const { return m_scratch; }

    std::string name() const override { return "cuda"; }
    ComputeDevice device() const override
    {
        ComputeDevice d;
        d.id = "cuda:" + std::to_string(m_ctx->device);
        d.name = m_ctx->properties.name;
        d.memoryBytes = m_ctx->properties.totalGlobalMem;
        d.gpu = true;
        return d;
    }

    std::shared_ptr<DeviceModel> deviceModel(const Transformer& t) const
    {
        for (auto it = m_models.begin(); it != m_models.end(); ++it) {
            if ((*it)->matches(t)) {
                auto found = *it;
                m_models.erase(it);
                m_models.push_front(found);
                return found;
            }
        }
        // Keep at most two models (a model and its reference); a new one that would not fit next to them evicts them.
        while (m_models.size() >= 2)
            m_models.pop_back();
        std::uint64_t bytes = t.model().weightBytes();
        if (!m_models.empty() && static_cast<double>(bytes) > 0.6 * static_cast<double>(m_ctx->freeMemory()))
            m_models.clear();
        auto model = std::make_shared<DeviceModel>(*m_ctx, t);
        m_models.push_front(model);
        return model;
    }

    // DeepSeek-layout attention (engine/deepseek_attention.cpp) has no GPU kernels yet: its forward passes run on the CPU.
    std::string forwardFallbackReason(const ModelConfig& config) const override
    {
        return config.deepseek ? "the DeepSeek-layout attention runs on the CPU" : std::string();
    }

    std::unique_ptr<LayerBatchRunner> layerRunner(const Transformer& model, const TokenSequences& sequences) const override
    {
        if (!forwardFallbackReason(model.config()).empty())
            return cpuBackend().layerRunner(model, sequences);
        ContextLock lock(*m_ctx);
        return std::make_unique<CudaLayerRunner>(*this, deviceModel(model), sequences);
    }

    std::unique_ptr<DecoderSession> decoderSession(const Transformer& model, std::int64_t capacity) const override
    {
        // The GPU's cache is float32 only: a quantised (or bf16) cache is stored and read by the CPU engine, so the
        // run measures and reports the cache it asked for (docs/kv-cache.md, "CUDA").
        if (!forwardFallbackReason(model.config()).empty() || !model.cacheFormat().isFloat32())
            return cpuBackend().decoderSession(model, capacity);
        ContextLock lock(*m_ctx);
        return std::make_unique<CudaDecoderSession>(*this, deviceModel(model), capacity);
    }

    Eigen::MatrixXd gram(const MatrixRM& m, GramSide side, const JobControl& job) const override
    {
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.gram(m, side);
    }
    Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job) const override
    {
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.symmetricEigenvalues(a);
    }
    std::vector<double> singularValues(const MatrixRM& m, const JobControl& job) const override
    {
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.singularValues(m);
    }
    std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job) const override
    {
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.singularValues(m);
    }
    std::vector<std::vector<double>> spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right,
                                             const JobControl& job) const override
    {
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.spectra(matrices, right);
    }
    LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options, const JobControl& job) const override
    {
        (void)options; // the GPU always takes the exact path (the randomized one exists to save CPU time and memory)
        job.checkCancelled();
        ContextLock lock(*m_ctx);
        return m_linalg.lowRankFactors(m, k);
    }
    MatrixXdRM multiply(const MatrixRM& a, const MatrixXdRM& b) const override
    {
        ContextLock lock(*m_ctx);
        return m_linalg.multiply(a, b);
    }
    double reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down) const override
    {
        ContextLock lock(*m_ctx);
        return m_linalg.reconstructionError(m, up, down);
    }

private:
    std::unique_ptr<Context> m_ctx;
    mutable Linalg m_linalg;
    mutable ForwardScratch m_scratch;
    mutable std::list<std::shared_ptr<DeviceModel>> m_models;
};

CudaLayerRunner::CudaLayerRunner(const CudaBackend& backend, std::shared_ptr<DeviceModel> model, const TokenSequences& sequences)
    : m_backend(backend), m_model(std::move(model))
{
    const Transformer& t = m_model->transformer();
    const ModelConfig& c = t.config();
    Context& ctx = backend.context();
    std::vector<MatrixRM> embedded;
    std::int64_t total = 0;
    for (const auto& s : sequences) {
        embedded.push_back(t.embed(s));
        m_offsets.push_back(total);
        m_lengths.push_back(static_cast<std::int64_t>(s.size()));
        total += static_cast<std::int64_t>(s.size());
    }
    const std::int64_t budget = chunkTokens(ctx, c);
    std::size_t first = 0;
    std::int64_t tokens = 0;
    for (std::size_t i = 0; i < sequences.size(); ++i) {
        if (i > first && tokens + m_lengths[i] > budget) {
            m_chunks.emplace_back(first, i);
            first = i;
            tokens = 0;
        }
        tokens += m_lengths[i];
    }
    if (first < sequences.size())
        m_chunks.emplace_back(first, sequences.size());
    // Hidden states stay on the device when they take at most a quarter of the free memory.
    const double bytes = 4.0 * static_cast<double>(total) * static_cast<double>(c.hidden);
    m_onDevice = bytes <= 0.25 * static_cast<double>(ctx.freeMemory());
    if (m_onDevice) {
        m_hidden.reserve(static_cast<std::size_t>(std::max<std::int64_t>(total * c.hidden, 1)));
        for (std::size_t i = 0; i < embedded.size(); ++i)
            upload(ctx, m_hidden.data() + m_offsets[i] * c.hidden, embedded[i].data(), static_cast<std::size_t>(embedded[i].size()) * sizeof(float));
    } else {
        m_host = std::move(embedded);
    }
}

void CudaLayerRunner::runLayer(std::int64_t layer, const StatisticsOptions& options, LayerStatistics* stats, const JobControl& job)
{
    Context& ctx = m_backend.context();
    ContextLock lock(ctx);
    const ModelConfig& c = m_model->config();
    if (layer < 0 || layer >= c.layers)
        throw Error("internal: layer " + std::to_string(layer) + " out of range");
    const DeviceLayer w = m_model->acquire(layer);
    m_model->prefetch(layer + 1);
    if (stats)
        m_stats.reset(ctx, c, options.inputGram);
    for (std::size_t ci = 0; ci < m_chunks.size(); ++ci) {
        job.progress(static_cast<double>(ci) / static_cast<double>(m_chunks.size()), "calibrating layer " + std::to_string(layer));
        const auto [first, last] = m_chunks[ci];
        const std::int64_t row0 = m_offsets[first];
        std::int64_t rows = 0;
        std::vector<Segment> segments;
        for (std::size_t i = first; i < last; ++i) {
            Segment s;
            s.row0 = m_offsets[i] - row0;
            s.count = m_lengths[i];
            segments.push_back(s);
            rows += m_lengths[i];
        }
        float* h = nullptr;
        if (m_onDevice) {
            h = m_hidden.data() + row0 * c.hidden;
        } else {
            h = m_hidden.reserve(static_cast<std::size_t>(rows * c.hidden));
            for (std::size_t i = first; i < last; ++i)
                check(cudaMemcpyAsync(h + (m_offsets[i] - row0) * c.hidden, m_host[i].data(), static_cast<std::size_t>(m_host[i].size()) * sizeof(float),
                                      cudaMemcpyHostToDevice, ctx.compute),
                      "upload");
        }
        layerForward(ctx, m_backend.scratch(), c, w, h, rows, nullptr, segments, stats ? &m_stats : nullptr);
        if (!m_onDevice) {
            for (std::size_t i = first; i < last; ++i)
                check(cudaMemcpyAsync(m_host[i].data(), h + (m_offsets[i] - row0) * c.hidden, static_cast<std::size_t>(m_host[i].size()) * sizeof(float),
                                      cudaMemcpyDeviceToHost, ctx.compute),
                      "download");
        }
    }
    m_model->release(layer);
    if (stats)
        m_stats.addTo(ctx, c, *stats);
    ctx.synchronize();
}

std::vector<MatrixRM> CudaLayerRunner::hiddenStates() const
{
    if (!m_onDevice)
        return m_host;
    Context& ctx = m_backend.context();
    ContextLock lock(ctx);
    const std::int64_t hidden = m_model->config().hidden;
    std::vector<MatrixRM> out;
    for (std::size_t i = 0; i < m_offsets.size(); ++i) {
        MatrixRM m(m_lengths[i], hidden);
        download(ctx, m.data(), m_hidden.data() + m_offsets[i] * hidden, static_cast<std::size_t>(m.size()) * sizeof(float));
        out.push_back(std::move(m));
    }
    return out;
}

CudaDecoderSession::CudaDecoderSession(const CudaBackend& backend, std::shared_ptr<DeviceModel> model, std::int64_t capacity)
    : m_backend(backend), m_model(std::move(model)), m_capacity(capacity)
{
    if (capacity <= 0)
        throw Error("internal: a KV cache needs a positive capacity");
    const ModelConfig& c = m_model->config();
    m_keys.resize(static_cast<std::size_t>(c.layers));
    m_values.resize(static_cast<std::size_t>(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l) {
        m_keys[static_cast<std::size_t>(l)].reserve(static_cast<std::size_t>(capacity * c.kvDim()));
        m_values[static_cast<std::size_t>(l)].reserve(static_cast<std::size_t>(capacity * c.kvDim()));
    }
}

double CudaDecoderSession::kvBytesPerToken() const
{
    return static_cast<double>(kvElementsPerToken()) * sizeof(float);
}

std::int64_t CudaDecoderSession::kvElementsPerToken() const
{
    const ModelConfig& c = m_model->config();
    return 2 * c.kvDim() * c.layers; // the GPU caches full keys and values (the expanded form) for every model
}

MatrixRM CudaDecoderSession::forward(std::span<const int> tokens, Logits logits)
{
    Context& ctx = m_backend.context();
    ContextLock lock(ctx);
    const ModelConfig& c = m_model->config();
    const std::int64_t T = static_cast<std::int64_t>(tokens.size());
    const std::int64_t p0 = m_length;
    if (T == 0)
        return MatrixRM();
    if (p0 + T > m_capacity)
        throw Error("context full: " + std::to_string(p0 + T) + " tokens do not fit a cache of " + std::to_string(m_capacity));
    const MatrixRM embedded = m_model->transformer().embed(tokens);
    float* h = m_hidden.reserve(static_cast<std::size_t>(T * c.hidden));
    check(cudaMemcpyAsync(h, embedded.data(), static_cast<std::size_t>(embedded.size()) * sizeof(float), cudaMemcpyHostToDevice, ctx.compute),
          "upload");
    ForwardScratch& s = m_backend.scratch();
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const DeviceLayer w = m_model->acquire(l);
        if (!m_model->resident())
            m_model->prefetch(l + 1 < c.layers ? l + 1 : 0);
        Segment seg;
        seg.row0 = 0;
        seg.count = T;
        seg.firstPosition = p0;
        seg.keyCache = m_keys[static_cast<std::size_t>(l)].data();
        seg.valueCache = m_values[static_cast<std::size_t>(l)].data();
        layerForward(ctx, s, c, w, h, T, nullptr, {seg}, nullptr);
        m_model->release(l);
    }
    m_length = p0 + T;
    if (logits == Logits::None) {
        ctx.synchronize();
        return MatrixRM();
    }
    const std::int64_t rows = logits == Logits::Last ? 1 : T;
    const float* from = h + (T - rows) * c.hidden;
    float* out = m_logits.reserve(static_cast<std::size_t>(rows * c.vocab));
    logitsForward(ctx, s, *m_model, from, rows, out);
    MatrixRM result(rows, c.vocab);
    download(ctx, result.data(), out, static_cast<std::size_t>(result.size()) * sizeof(float));
    return result;
}

} // namespace

std::shared_ptr<const ComputeBackend> createCudaBackend(int device, std::string& whyNot)
{
    std::unique_ptr<Context> ctx = createContext(device, whyNot);
    if (!ctx)
        return nullptr;
    if (ctx->precision == GemmPrecision::TF32)
        check(cublasSetMathMode(ctx->blas, CUBLAS_TF32_TENSOR_OP_MATH), "cublasSetMathMode");
    return std::make_shared<CudaBackend>(std::move(ctx));
}

std::vector<ComputeDevice> cudaDevices(std::string& whyNot)
{
    return probeDevices(whyNot);
}

} // namespace mla::cuda
