#pragma once

#include "analysis/layer_statistics.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "numerics/decompositions.h"
#include "util/job_control.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// Where the heavy numerics run (docs/cuda-backend.md). One interface at the granularity core already works at: a
// decoder layer over a batch of calibration sequences, an incremental decoder for generation and evaluation, Gram
// matrices, spectra, low-rank factors and the few dense products of a conversion. The CPU backend calls the
// existing functions unchanged, so its results are bit-identical to the code before the interface existed; the CUDA
// backend (built with MLA_WITH_CUDA) runs the same mathematics on one GPU. No Qt here: the GUI lists devices through
// listComputeDevices() and selects one with selectBackend(). Every core step that computes takes the backend as its
// first parameter; none reads a global one.
namespace mla {

// A place computations can run, as the user sees it.
struct ComputeDevice {
    std::string id;                 // "cpu" or "cuda:N"
    std::string name;               // "CPU (avx2+fma+f16c, 2 threads)" or "NVIDIA H100 80GB HBM3"
    std::uint64_t memoryBytes = 0;  // GPU: total device memory; CPU: 0
    bool gpu = false;
    std::string label() const;      // name, plus the memory of a GPU: "NVIDIA H100 80GB HBM3 (79.1 GiB)"
};

// One decoder layer at a time over a batch of sequences (calibration, analysis): owns every sequence's hidden
// states (positions 0..T-1, causal), advanced in place by runLayer.
class LayerBatchRunner {
public:
    virtual ~LayerBatchRunner() = default;
    // Applies `layer` to every sequence. When `stats` is given, accumulates into it what the calibration observer
    // accumulates on the CPU: pre-RoPE query/key pair norms and moments and, when options.inputGram, the Gram of the
    // attention input.
    virtual void runLayer(std::int64_t layer, const StatisticsOptions& options, LayerStatistics* stats,
                          const JobControl& job = {}) = 0;
    // Host copies of the hidden states now ([T_i, hidden] per sequence).
    virtual std::vector<MatrixRM> hiddenStates() const = 0;
};

// An incremental decoder with its own KV cache (generation, perplexity). The same contract as Transformer::forward.
class DecoderSession {
public:
    virtual ~DecoderSession() = default;
    // Runs `tokens` at positions length() onwards and returns the logits asked for ([T, vocab], [1, vocab] or empty).
    virtual MatrixRM forward(std::span<const int> tokens, Logits logits = Logits::Last) = 0;
    virtual void reset() = 0; // empties the cache
    virtual std::int64_t length() const = 0;
    virtual std::int64_t capacity() const = 0;
    virtual double kvBytesPerToken() const = 0;   // of the cache as the CPU engine would allocate it for this model
    virtual std::int64_t kvElementsPerToken() const = 0;
};

// Several independent sequences of one model decoded side by side, each with its own KV cache (sampled calibration,
// batched generation): one step appends one token to each of the sequences named and returns all their logits. Row i
// of a step equals what a DecoderSession holding sequence i alone returns for the same token (bit for bit on the CPU).
class BatchDecoderSession {
public:
    virtual ~BatchDecoderSession() = default;
    virtual std::int64_t sequences() const = 0;
    virtual std::int64_t capacity() const = 0; // positions per sequence
    virtual std::int64_t length(std::int64_t sequence) const = 0;
    // Runs `tokens` at positions length(sequence) onwards in that sequence alone (a prompt) and returns its last
    // logits [1, vocab].
    virtual MatrixRM prefill(std::int64_t sequence, std::span<const int> tokens) = 0;
    // tokens[i] appended to sequence sequenceIds[i] (distinct), all in one step; returns [n, vocab], row i for
    // sequenceIds[i].
    virtual MatrixRM step(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens) = 0;
    // step() that also shows `observer` every layer's activations of the step's rows (Transformer::forwardBatch's
    // observer) and computes the logits only when `logits` (a last step run only to be observed). Only sessions of a
    // backend whose batchDecodeObservable() is true implement it; others throw.
    virtual MatrixRM observedStep(std::span<const std::int64_t> sequenceIds, std::span<const int> tokens, ForwardObserver& observer,
                                  bool logits);
    virtual double kvBytesPerToken() const = 0; // of one sequence's cache, as DecoderSession reports it
    virtual std::int64_t kvElementsPerToken() const = 0;
};

class ComputeBackend {
public:
    virtual ~ComputeBackend() = default;

    virtual std::string name() const = 0; // "cpu" or "cuda"
    virtual ComputeDevice device() const = 0;
    bool isGpu() const { return device().gpu; }
    // Why this backend runs `config`'s forward passes on the CPU instead (empty: it runs them itself).
    virtual std::string forwardFallbackReason(const ModelConfig& config) const { (void)config; return {}; }

    // --- forward passes
    virtual std::unique_ptr<LayerBatchRunner> layerRunner(const Transformer& model, const TokenSequences& sequences) const = 0;
    virtual std::unique_ptr<DecoderSession> decoderSession(const Transformer& model, std::int64_t capacity) const = 0;
    // `sequences` sequences of up to `capacity` positions each. This default steps one DecoderSession per sequence
    // (correct on any backend, one matrix-vector product per sequence); the CPU backend runs a step as one batch
    // (Transformer::forwardBatch).
    virtual std::unique_ptr<BatchDecoderSession> batchDecoderSession(const Transformer& model, std::int64_t sequences,
                                                                     std::int64_t capacity) const;
    // Whether its batch decoder sessions implement observedStep (the CPU's batched step does; one session per sequence
    // cannot show its layers).
    virtual bool batchDecodeObservable() const { return false; }

    // --- dense linear algebra (double results; float inputs are widened exactly)
    virtual Eigen::MatrixXd gram(const MatrixRM& m, GramSide side, const JobControl& job = {}) const = 0;
    // All eigenvalues of a symmetric matrix (lower triangle read), descending.
    virtual Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job = {}) const = 0;
    virtual std::vector<double> singularValues(const MatrixRM& m, const JobControl& job = {}) const = 0;
    virtual std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job = {}) const = 0;
    // Singular values of each matrix, or of each matrix times `right` (widened to double) when `right` is given: the
    // spectra of one layer in one call, so that a GPU uploads `right` once.
    virtual std::vector<std::vector<double>> spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right,
                                                     const JobControl& job = {}) const;
    virtual LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options = {},
                                          const JobControl& job = {}) const = 0;
    // a (widened to double) * b.
    virtual MatrixXdRM multiply(const MatrixRM& a, const MatrixXdRM& b) const = 0;
    // ||m - up * down||_F, in double.
    virtual double reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down) const = 0;
};

// Today's code, on this machine's cores.
const ComputeBackend& cpuBackend();
std::shared_ptr<const ComputeBackend> cpuBackendShared();

// The CUDA backend on GPU `device` (0 = the first), or null with the reason in `whyNot` (built without CUDA, no such
// device, no or failing driver). Created once per device; later calls return the same object.
std::shared_ptr<const ComputeBackend> cudaBackend(int device = 0, std::string* whyNot = nullptr);
bool cudaCompiledIn(); // built with MLA_WITH_CUDA

// Every device computations can run on: the CPU first, then each usable GPU (name and memory for the GUI's combo).
std::vector<ComputeDevice> listComputeDevices();

// A device as the user names it: "auto", "cpu", "cuda" (the first GPU) or "cuda:N" (GPU N).
struct DeviceName {
    enum class Kind { Auto, Cpu, Cuda } kind = Kind::Auto;
    int index = 0; // Cuda: the GPU
};
// Null for anything else ("cuda:x", "gpu", "cuda:-1").
std::optional<DeviceName> parseDeviceName(std::string_view name);

struct BackendSelection {
    std::shared_ptr<const ComputeBackend> backend;
    std::string message; // where computations run, or why not on a GPU ("no GPU: ...; computing on the CPU")
    bool fellBack = false; // a GPU was asked for explicitly and the CPU is used instead
};

// "auto" (the first GPU when one works, else the CPU), "cpu", "cuda" or "cuda:N" (that GPU, or the CPU with a message
// saying why, when it is not usable). Throws Error for any other name. There is no process-wide backend: a job is
// given the one selected for it (core/pipeline/execution_context.h), so a later selection never changes a running job.
BackendSelection selectBackend(std::string_view preference);

} // namespace mla
