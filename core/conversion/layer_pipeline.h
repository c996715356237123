#pragma once

#include "model/model.h"
#include "util/error.h"
#include "util/job_control.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mla {

// Brings a layer's original weights into memory (faults in the mapped pages of every tensor), so that the
// decomposition and the writer that come after it find them resident instead of waiting on the disk.
inline void readLayerPages(const LayerWeights& w)
{
    constexpr std::size_t kPage = 4096;
    unsigned sum = 0;
    for (const Tensor* t : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down}) {
        if (t->empty())
            continue;
        const auto* bytes = static_cast<const volatile std::uint8_t*>(t->data());
        const std::size_t n = t->bytes();
        for (std::size_t i = 0; i < n; i += kPage)
            sum += bytes[i];
        if (n > 0)
            sum += bytes[n - 1];
    }
    static std::atomic<unsigned> sink{0}; // keeps the reads from being optimised away
    sink.fetch_add(sum, std::memory_order_relaxed);
}

// The three stages of a streaming conversion, overlapped across layers: while the writer (the caller's thread)
// writes layer i-1, a worker thread converts layer i and a reader thread reads layer i+1. The stages are
// the same functions whether or not they overlap, so the output is the same bytes either way; `concurrent` false
// runs read and compute of a layer inline when the writer asks for it (the sequential reference).
//
// Memory is bounded to three layers in flight: the one being written (its converted tensors), the one being
// converted (or converted and waiting for the writer), and the one read ahead (its pages resident). That is the
// fewest that keeps all three stages busy; more would only add memory, since the slowest stage sets the pace.
//
// Layers are converted in order on one worker thread (the sequential refit needs the layers before it). Progress:
// the worker's stage messages are forwarded from the writer's thread while it waits for a layer, so the JobControl's
// callback is only ever called from the thread that called take(). Cancellation: the reader thread watches the job's
// flag (every 50 ms) and raises the worker's, which the decomposition polls at its safe points; an error or a cancellation in any stage is rethrown by take(), and destroying the pipeline stops and
// joins its threads (a finished layer nobody takes is dropped).
template <class Result>
class LayerPipeline {
public:
    using ReadFn = std::function<void(std::int64_t layer)>;
    using ComputeFn = std::function<Result(std::int64_t layer, const JobControl& job)>;

    LayerPipeline(std::int64_t layers, ReadFn read, ComputeFn compute, const JobControl& job, bool concurrent)
        : m_layers(layers), m_read(std::move(read)), m_compute(std::move(compute)), m_job(job), m_concurrent(concurrent),
          m_results(static_cast<std::size_t>(layers))
    {
        m_workerJob = JobControl(&m_stop, [this](double, const std::string& stage) {
            if (m_job.cancelled())
                throw Cancelled();
            const std::lock_guard lock(m_mutex);
            m_stage = stage;
            m_stageChanged = true;
            m_changed.notify_all();
        });
        if (m_concurrent && m_layers > 0) {
            m_reader = std::thread([this] { readerLoop(); });
            m_worker = std::thread([this] { workerLoop(); });
        }
    }

    ~LayerPipeline() { stop(); }
    LayerPipeline(const LayerPipeline&) = delete;
    LayerPipeline& operator=(const LayerPipeline&) = delete;

    // The converted layer `layer`; layers are taken in increasing order. `fraction` is the job's progress while it
    // waits for the layer.
    Result take(std::int64_t layer, double fraction)
    {
        if (layer < 0 || layer >= m_layers || layer <= m_writing)
            throw Error("internal: pipeline layers must be taken in order");
        const std::string prefix = "converting layer " + std::to_string(layer);
        if (!m_concurrent) {
            m_writing = layer;
            m_job.progress(fraction, prefix);
            m_read(layer);
            return m_compute(layer, m_job.slice(fraction, fraction));
        }
        reportOrStop(fraction, prefix);
        std::unique_lock lock(m_mutex);
        m_writing = layer;
        m_changed.notify_all(); // the worker may start the next layer, the reader the one after
        auto& slot = m_results[static_cast<std::size_t>(layer)];
        while (!slot && !m_error) {
            if (m_stageChanged) {
                const std::string stage = prefix + (m_stage.empty() ? std::string() : ": " + m_stage);
                m_stageChanged = false;
                lock.unlock();
                reportOrStop(fraction, stage);
                lock.lock();
                continue;
            }
            m_changed.wait_for(lock, std::chrono::milliseconds(50));
            if (m_job.cancelled()) {
                lock.unlock();
                reportOrStop(fraction, prefix); // throws Cancelled after stopping the stages
                lock.lock();
            }
        }
        if (slot) {
            Result r = std::move(*slot);
            slot.reset();
            return r;
        }
        const std::exception_ptr error = m_error;
        lock.unlock();
        stop();
        std::rethrow_exception(error);
    }

    // Stops the stages and waits for them; idempotent.
    void stop()
    {
        {
            const std::lock_guard lock(m_mutex);
            m_stop = true;
            m_changed.notify_all();
        }
        if (m_reader.joinable())
            m_reader.join();
        if (m_worker.joinable())
            m_worker.join();
    }

private:
    void reportOrStop(double fraction, const std::string& stage)
    {
        try {
            m_job.progress(fraction, stage);
        } catch (...) {
            stop();
            throw;
        }
    }

    void fail(std::exception_ptr e)
    {
        const std::lock_guard lock(m_mutex);
        if (!m_error)
            m_error = std::move(e);
        m_stop = true;
        m_changed.notify_all();
    }

    void readerLoop()
    {
        try {
            for (std::int64_t l = 0; l < m_layers; ++l) {
                {
                    std::unique_lock lock(m_mutex);
                    // At most one layer ahead of the one being converted, two ahead of the one being written.
                    while (!m_stop && l > m_writing + 2) {
                        m_changed.wait_for(lock, std::chrono::milliseconds(50));
                        if (m_job.cancelled()) {
                            m_stop = true;
                            m_changed.notify_all();
                        }
                    }
                    if (m_stop)
                        return;
                }
                if (m_job.cancelled())
                    throw Cancelled();
                m_read(l);
                const std::lock_guard lock(m_mutex);
                m_readCount = l + 1;
                m_changed.notify_all();
            }
            // Then it watches the job's flag, so that a cancel reaches the worker's own checks while the writer is
            // busy writing rather than waiting.
            std::unique_lock lock(m_mutex);
            while (!m_stop) {
                m_changed.wait_for(lock, std::chrono::milliseconds(50));
                if (m_job.cancelled()) {
                    m_stop = true;
                    m_changed.notify_all();
                }
            }
        } catch (...) {
            fail(std::current_exception());
        }
    }

    void workerLoop()
    {
        try {
            for (std::int64_t l = 0; l < m_layers; ++l) {
                {
                    std::unique_lock lock(m_mutex);
                    m_changed.wait(lock, [&] { return m_stop.load() || (l < m_readCount && l <= m_writing + 1); });
                    if (m_stop)
                        return;
                    m_stage.clear();
                }
                Result r = m_compute(l, m_workerJob);
                const std::lock_guard lock(m_mutex);
                m_results[static_cast<std::size_t>(l)] = std::move(r);
                m_changed.notify_all();
            }
        } catch (...) {
            fail(std::current_exception());
        }
    }

    const std::int64_t m_layers;
    ReadFn m_read;
    ComputeFn m_compute;
    JobControl m_job;
    JobControl m_workerJob;
    const bool m_concurrent;

    std::mutex m_mutex;
    std::condition_variable m_changed;
    std::atomic<bool> m_stop{false};
    std::int64_t m_writing = -1;   // the layer the writer took last
    std::int64_t m_readCount = 0;  // layers [0, m_readCount) are read
    std::vector<std::optional<Result>> m_results;
    std::exception_ptr m_error;
    std::string m_stage;           // the worker's latest stage message
    bool m_stageChanged = false;
    std::thread m_reader;
    std::thread m_worker;
};

} // namespace mla
