#include "backend/compute_backend.h"

#include "numerics/dense_kernels.h"
#include "tensor/kernels.h"
#include "util/error.h"

#if defined(MLA_WITH_CUDA)
#include "backend/cuda/cuda_entry.h"
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mla {
namespace {

// ---------------------------------------------------------------------------------------------------------------------
// The CPU backend: the functions core used before the interface existed, called exactly as they were.

class StatisticsObserver : public ForwardObserver {
public:
    StatisticsObserver(const ModelConfig& config, const StatisticsOptions& options, LayerStatistics& stats)
        : m_config(config), m_options(options), m_stats(stats) {}
    void onLayer(const LayerActivations& a) override { accumulateStatistics(m_config, a, m_options, m_stats); }

private:
    const ModelConfig& m_config;
    const StatisticsOptions& m_options;
    LayerStatistics& m_stats;
};

class CpuLayerRunner final : public LayerBatchRunner {
public:
    CpuLayerRunner(const Transformer& model, const TokenSequences& sequences) : m_model(model)
    {
        m_hidden.reserve(sequences.size());
        for (const auto& s : sequences)
            m_hidden.push_back(model.embed(s));
    }

    void runLayer(std::int64_t layer, const StatisticsOptions& options, LayerStatistics* stats, const JobControl& job) override
    {
        const ModelConfig& c = m_model.config();
        std::unique_ptr<StatisticsObserver> observer;
        if (stats)
            observer = std::make_unique<StatisticsObserver>(c, options, *stats);
        for (std::size_t i = 0; i < m_hidden.size(); ++i) {
            job.progress(static_cast<double>(i) / static_cast<double>(m_hidden.size()), "calibrating layer " + std::to_string(layer));
            m_model.runLayer(layer, m_hidden[i], observer.get());
        }
    }

    std::vector<MatrixRM> hiddenStates() const override { return m_hidden; }

private:
    const Transformer& m_model;
    std::vector<MatrixRM> m_hidden;
};

class CpuDecoderSession final : public DecoderSession {
public:
    CpuDecoderSession(const Transformer& model, std::int64_t capacity) : m_model(model), m_cache(model.newCache(capacity)) {}
    MatrixRM forward(std::span<const int> tokens, Logits logits) override { return m_model.forward(tokens, m_cache, logits); }
    void reset() override { m_cache.clear(); }
    std::int64_t length() const override { return m_cache.length(); }
    std::int64_t capacity() const override { return m_cache.capacity(); }
    double kvBytesPerToken() const override { return m_cache.bytesPerToken(); }
    std::int64_t kvElementsPerToken() const override { return m_cache.elementsPerToken(); }

private:
    const Transformer& m_model;
    KvCache m_cache;
};

void checkSequence(std::int64_t sequence, std::int64_t sequences)
{
    if (sequence < 0 || sequence >= sequences)
        throw Error("internal: sequence " + std::to_string(sequence) + " of a batch of " + std::to_string(sequences));
}

void checkStep(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens, std::int64_t sequences)
{
    if (sequenceIds.size() != tokens.size())
        throw Error("internal: a batched decode step needs one token per sequence");
    for (const std::int64_t s : sequenceIds)
        checkSequence(s, sequences);
}

class CpuBatchDecoderSession final : public BatchDecoderSession {
public:
    CpuBatchDecoderSession(const Transformer& model, std::int64_t sequences, std::int64_t capacity) : m_model(model)
    {
        m_caches.reserve(static_cast<std::size_t>(std::max<std::int64_t>(sequences, 0)));
        for (std::int64_t i = 0; i < sequences; ++i)
            m_caches.push_back(model.newCache(capacity));
    }
    std::int64_t sequences() const override { return static_cast<std::int64_t>(m_caches.size()); }
    std::int64_t capacity() const override { return m_caches.empty() ? 0 : m_caches.front().capacity(); }
    std::int64_t length(std::int64_t sequence) const override
    {
        checkSequence(sequence, sequences());
        return m_caches[static_cast<std::size_t>(sequence)].length();
    }
    MatrixRM prefill(std::int64_t sequence, std::span<const int> tokens) override
    {
        checkSequence(sequence, sequences());
        return m_model.forward(tokens, m_caches[static_cast<std::size_t>(sequence)], Logits::Last);
    }
    MatrixRM step(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens) override
    {
        return run(sequenceIds, tokens, nullptr, Logits::All);
    }
    MatrixRM observedStep(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens, ForwardObserver& observer,
                          bool logits) override
    {
        return run(sequenceIds, tokens, &observer, logits ? Logits::All : Logits::None);
    }
    double kvBytesPerToken() const override { return m_caches.empty() ? 0.0 : m_caches.front().bytesPerToken(); }
    std::int64_t kvElementsPerToken() const override { return m_caches.empty() ? 0 : m_caches.front().elementsPerToken(); }

private:
    MatrixRM run(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens, ForwardObserver* observer, Logits logits)
    {
        checkStep(sequenceIds, tokens, sequences());
        std::vector<KvCache*> caches;
        for (const std::int64_t s : sequenceIds)
            caches.push_back(&m_caches[static_cast<std::size_t>(s)]);
        return m_model.forwardBatch(tokens, caches, observer, logits);
    }

    const Transformer& m_model;
    std::vector<KvCache> m_caches;
};

// Any backend's decoder, one session per sequence.
class SessionBatchDecoder final : public BatchDecoderSession {
public:
    SessionBatchDecoder(const ComputeBackend& backend, const Transformer& model, std::int64_t sequences, std::int64_t capacity)
        : m_capacity(capacity)
    {
        for (std::int64_t i = 0; i < sequences; ++i)
            m_sessions.push_back(backend.decoderSession(model, capacity));
    }
    std::int64_t sequences() const override { return static_cast<std::int64_t>(m_sessions.size()); }
    std::int64_t capacity() const override { return m_capacity; }
    std::int64_t length(std::int64_t sequence) const override
    {
        checkSequence(sequence, sequences());
        return m_sessions[static_cast<std::size_t>(sequence)]->length();
    }
    MatrixRM prefill(std::int64_t sequence, std::span<const int> tokens) override
    {
        checkSequence(sequence, sequences());
        return m_sessions[static_cast<std::size_t>(sequence)]->forward(tokens, Logits::Last);
    }
    MatrixRM step(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens) override
    {
        checkStep(sequenceIds, tokens, sequences());
        MatrixRM out;
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            const MatrixRM row = m_sessions[static_cast<std::size_t>(sequenceIds[i])]->forward(tokens.subspan(i, 1), Logits::Last);
            if (i == 0)
                out.resize(static_cast<Eigen::Index>(tokens.size()), row.cols());
            out.row(static_cast<Eigen::Index>(i)) = row.row(0);
        }
        return out;
    }
    double kvBytesPerToken() const override { return m_sessions.empty() ? 0.0 : m_sessions.front()->kvBytesPerToken(); }
    std::int64_t kvElementsPerToken() const override { return m_sessions.empty() ? 0 : m_sessions.front()->kvElementsPerToken(); }

private:
    std::int64_t m_capacity = 0;
    std::vector<std::unique_ptr<DecoderSession>> m_sessions;
};

class CpuBackend final : public ComputeBackend {
public:
    std::string name() const override { return "cpu"; }
    ComputeDevice device() const override
    {
        ComputeDevice d;
        d.id = "cpu";
        int threads = 1;
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        d.name = std::string("CPU (") + kernelInstructionSet() + ", " + std::to_string(threads) + (threads == 1 ? " thread)" : " threads)");
        d.gpu = false;
        return d;
    }
    std::unique_ptr<LayerBatchRunner> layerRunner(const Transformer& model, const TokenSequences& sequences) const override
    {
        return std::make_unique<CpuLayerRunner>(model, sequences);
    }
    std::unique_ptr<DecoderSession> decoderSession(const Transformer& model, std::int64_t capacity) const override
    {
        return std::make_unique<CpuDecoderSession>(model, capacity);
    }
    std::unique_ptr<BatchDecoderSession> batchDecoderSession(const Transformer& model, std::int64_t sequences,
                                                             std::int64_t capacity) const override
    {
        return std::make_unique<CpuBatchDecoderSession>(model, sequences, capacity);
    }
    bool batchDecodeObservable() const override { return true; }
    Eigen::MatrixXd gram(const MatrixRM& m, GramSide side, const JobControl& job) const override { return gramMatrix(m, side, job); }
    Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job) const override
    {
        return mla::symmetricEigenvalues(std::move(a), job);
    }
    std::vector<double> singularValues(const MatrixRM& m, const JobControl& job) const override { return mla::singularValues(m, job); }
    std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job) const override { return mla::singularValues(m, job); }
    LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options, const JobControl& job) const override
    {
        return mla::lowRankFactors(m, k, options, job);
    }
    MatrixXdRM multiply(const MatrixRM& a, const MatrixXdRM& b) const override
    {
        if (a.cols() != b.rows())
            throw Error("internal: product of a " + std::to_string(a.cols()) + "-column matrix with " + std::to_string(b.rows()) + " rows");
        const MatrixXdRM wide = a.cast<double>();
        MatrixXdRM out(a.rows(), b.cols());
        gemmRowMajor(out, 1.0, wide, b, 0.0);
        return out;
    }
    double reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down) const override
    {
        if (up.rows() != m.rows() || down.cols() != m.cols() || up.cols() != down.rows())
            throw Error("internal: reconstruction of the wrong shape");
        MatrixXdRM difference = m.cast<double>();
        gemmRowMajor(difference, -1.0, up.cast<double>(), down.cast<double>(), 1.0);
        return difference.norm();
    }
};

bool cudaDisabledByEnvironment()
{
    const char* v = std::getenv("MLA_CUDA_DISABLE");
    return v && *v && std::strcmp(v, "0") != 0;
}

std::string gibibytes(std::uint64_t bytes)
{
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
    return buffer;
}

} // namespace

std::string ComputeDevice::label() const
{
    if (!gpu)
        return name;
    return name + " (" + gibibytes(memoryBytes) + ")";
}

std::vector<std::vector<double>> ComputeBackend::spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right,
                                                         const JobControl& job) const
{
    std::vector<std::vector<double>> out;
    out.reserve(matrices.size());
    for (const MatrixRM* m : matrices) {
        if (right) {
            const MatrixXdRM product = m->cast<double>() * *right;
            out.push_back(singularValues(product, job));
        } else {
            out.push_back(singularValues(*m, job));
        }
    }
    return out;
}

MatrixRM BatchDecoderSession::observedStep(std::span<const std::int64_t>, std::span<const int>, ForwardObserver&, bool)
{
    throw Error("internal: this backend's batched decode cannot be observed");
}

std::unique_ptr<BatchDecoderSession> ComputeBackend::batchDecoderSession(const Transformer& model, std::int64_t sequences,
                                                                         std::int64_t capacity) const
{
    return std::make_unique<SessionBatchDecoder>(*this, model, sequences, capacity);
}

const ComputeBackend& cpuBackend()
{
    return *cpuBackendShared();
}

std::shared_ptr<const ComputeBackend> cpuBackendShared()
{
    static const std::shared_ptr<const ComputeBackend> cpu = std::make_shared<CpuBackend>();
    return cpu;
}

bool cudaCompiledIn()
{
#if defined(MLA_WITH_CUDA)
    return true;
#else
    return false;
#endif
}

std::shared_ptr<const ComputeBackend> cudaBackend(int device, std::string* whyNot)
{
    if (cudaDisabledByEnvironment()) {
        if (whyNot)
            *whyNot = "CUDA is disabled by MLA_CUDA_DISABLE";
        return nullptr;
    }
    if (device < 0) {
        if (whyNot)
            *whyNot = "there is no CUDA device " + std::to_string(device);
        return nullptr;
    }
#if defined(MLA_WITH_CUDA)
    // Created once per device and never destroyed: the CUDA runtime tears itself down at exit, before static
    // destructors would release device memory.
    struct Created {
        std::shared_ptr<const ComputeBackend> backend;
        std::string reason;
    };
    static std::mutex mutex;
    static auto* created = new std::map<int, Created>();
    std::lock_guard lock(mutex);
    auto it = created->find(device);
    if (it == created->end()) {
        Created c;
        try {
            c.backend = cuda::createCudaBackend(device, c.reason);
        } catch (const std::exception& e) {
            c.reason = e.what();
        }
        it = created->emplace(device, std::move(c)).first;
    }
    if (!it->second.backend && whyNot)
        *whyNot = it->second.reason;
    return it->second.backend;
#else
    if (whyNot)
        *whyNot = "this build has no CUDA support (configure with -DMLA_WITH_CUDA=ON where nvcc is installed)";
    return nullptr;
#endif
}

std::vector<ComputeDevice> listComputeDevices()
{
    std::vector<ComputeDevice> devices{cpuBackend().device()};
#if defined(MLA_WITH_CUDA)
    if (!cudaDisabledByEnvironment()) {
        std::string why;
        for (auto& d : cuda::cudaDevices(why))
            devices.push_back(std::move(d));
    }
#endif
    return devices;
}

std::optional<DeviceName> parseDeviceName(std::string_view name)
{
    if (name == "auto")
        return DeviceName{DeviceName::Kind::Auto, 0};
    if (name == "cpu")
        return DeviceName{DeviceName::Kind::Cpu, 0};
    if (name == "cuda")
        return DeviceName{DeviceName::Kind::Cuda, 0};
    constexpr std::string_view prefix = "cuda:";
    if (name.substr(0, prefix.size()) != prefix || name.size() == prefix.size() || name.size() > prefix.size() + 4)
        return std::nullopt;
    int index = 0;
    for (char ch : name.substr(prefix.size())) {
        if (ch < '0' || ch > '9')
            return std::nullopt;
        index = index * 10 + (ch - '0');
    }
    return DeviceName{DeviceName::Kind::Cuda, index};
}

BackendSelection selectBackend(std::string_view preference)
{
    const std::optional<DeviceName> device = parseDeviceName(preference);
    if (!device)
        throw Error("unknown device '" + std::string(preference) + "' (use auto, cpu, cuda or cuda:N)");
    BackendSelection s;
    if (device->kind == DeviceName::Kind::Cpu) {
        s.backend = cpuBackendShared();
        return s;
    }
    std::string why;
    if (auto cuda = cudaBackend(device->index, &why)) {
        s.backend = cuda;
        s.message = "computing on " + cuda->device().label() + " (" + cuda->device().id + ")";
        return s;
    }
    s.backend = cpuBackendShared();
    const bool asked = device->kind == DeviceName::Kind::Cuda;
    const std::string what = preference.find(':') != std::string_view::npos ? "CUDA device " + std::to_string(device->index) : "CUDA";
    s.message = (asked ? what + " was asked for but is not available: " : "no GPU: ") + why + "; computing on the CPU";
    s.fellBack = asked;
    return s;
}

} // namespace mla
