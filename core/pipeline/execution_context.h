#pragma once

#include "backend/compute_backend.h"
#include "util/job_control.h"

#include <memory>
#include <utility>

namespace mla {

// What one job runs with: its JobControl (progress, cancel) and the compute backend chosen for it. Fixed when the job
// starts and immutable for its life, so choosing another device (a GUI combo, a CLI flag of another command) affects
// only later jobs. Every pipeline action takes one (core/pipeline/); core steps take the backend and the JobControl
// as parameters.
class ExecutionContext {
public:
    // The CPU, no progress, not cancellable.
    ExecutionContext() : m_backend(cpuBackendShared()) {}
    // `backend` null means the CPU.
    explicit ExecutionContext(std::shared_ptr<const ComputeBackend> backend, JobControl job = {})
        : m_backend(backend ? std::move(backend) : cpuBackendShared()), m_job(std::move(job))
    {
    }

    const ComputeBackend& backend() const { return *m_backend; }
    const std::shared_ptr<const ComputeBackend>& sharedBackend() const { return m_backend; }
    const JobControl& job() const { return m_job; }

    // The same backend, reporting progress into [begin, end) of this context's progress.
    ExecutionContext slice(double begin, double end) const { return ExecutionContext(m_backend, m_job.slice(begin, end)); }

private:
    std::shared_ptr<const ComputeBackend> m_backend;
    JobControl m_job;
};

} // namespace mla
