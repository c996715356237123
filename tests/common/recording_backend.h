#pragma once

#include "backend/compute_backend.h"

#include <atomic>
#include <functional>
#include <memory>

namespace mla::test {

// A compute backend that runs everything on the CPU backend and counts the calls it receives, so that a test can see
// which backend a job really used (with one CPU in the test machine, every backend computes the same numbers).
// `beforeCall`, when set, runs at the start of every call (on the caller's thread): tests use it to hold a job at a
// known point.
class RecordingBackend final : public ComputeBackend {
public:
    explicit RecordingBackend(std::string id = "recording") : m_id(std::move(id)) {}

    std::int64_t calls() const { return m_calls.load(); }
    std::function<void()> beforeCall;

    std::string name() const override { return m_id; }
    ComputeDevice device() const override
    {
        ComputeDevice d = cpuBackend().device();
        d.id = m_id;
        return d;
    }
    std::unique_ptr<LayerBatchRunner> layerRunner(const Transformer& model, const TokenSequences& sequences) const override
    {
        count();
        return cpuBackend().layerRunner(model, sequences);
    }
    std::unique_ptr<DecoderSession> decoderSession(const Transformer& model, std::int64_t capacity) const override
    {
        count();
        return cpuBackend().decoderSession(model, capacity);
    }
    // Batched decoding: the CPU's batched session (observable, as on the CPU), unless `sessionPerSequence`, which
    // takes ComputeBackend's default of one decoder session per sequence (how a backend without its own batched step
    // decodes; it cannot be observed).
    bool sessionPerSequence = false;
    std::unique_ptr<BatchDecoderSession> batchDecoderSession(const Transformer& model, std::int64_t sequences,
                                                             std::int64_t capacity) const override
    {
        if (sessionPerSequence)
            return ComputeBackend::batchDecoderSession(model, sequences, capacity);
        count();
        return cpuBackend().batchDecoderSession(model, sequences, capacity);
    }
    bool batchDecodeObservable() const override { return !sessionPerSequence && cpuBackend().batchDecodeObservable(); }
    Eigen::MatrixXd gram(const MatrixRM& m, GramSide side, const JobControl& job) const override
    {
        count();
        return cpuBackend().gram(m, side, job);
    }
    Eigen::VectorXd symmetricEigenvalues(Eigen::MatrixXd a, const JobControl& job) const override
    {
        count();
        return cpuBackend().symmetricEigenvalues(std::move(a), job);
    }
    std::vector<double> singularValues(const MatrixRM& m, const JobControl& job) const override
    {
        count();
        return cpuBackend().singularValues(m, job);
    }
    std::vector<double> singularValues(const MatrixXdRM& m, const JobControl& job) const override
    {
        count();
        return cpuBackend().singularValues(m, job);
    }
    std::vector<std::vector<double>> spectra(const std::vector<const MatrixRM*>& matrices, const MatrixXdRM* right,
                                             const JobControl& job) const override
    {
        count();
        return cpuBackend().spectra(matrices, right, job);
    }
    LowRankFactors lowRankFactors(const MatrixRM& m, std::int64_t k, const LowRankOptions& options, const JobControl& job) const override
    {
        count();
        return cpuBackend().lowRankFactors(m, k, options, job);
    }
    MatrixXdRM multiply(const MatrixRM& a, const MatrixXdRM& b) const override
    {
        count();
        return cpuBackend().multiply(a, b);
    }
    double reconstructionError(const MatrixRM& m, const MatrixRM& up, const MatrixRM& down) const override
    {
        count();
        return cpuBackend().reconstructionError(m, up, down);
    }

private:
    void count() const
    {
        if (beforeCall)
            beforeCall();
        ++m_calls;
    }

    std::string m_id;
    mutable std::atomic<std::int64_t> m_calls{0};
};

} // namespace mla::test
