#pragma once

#include <cstdint>
#include <exception>

namespace mla {

// Runs body(i) for i in [0, count) on the OpenMP threads, one index at a time (for independent pieces of work of
// similar size: the sequences of a calibration batch). The products inside run on one thread each then (nested
// parallelism is off), which gives the same results as on many, so the outcome does not depend on the thread count.
// The first exception thrown by a body is rethrown here once every index has run; a body must not report progress
// or check for cancellation (both may throw on another thread than the caller's).
template <class Body>
void parallelForEach(std::int64_t count, const Body& body)
{
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) if (count > 1)
    for (std::int64_t i = 0; i < count; ++i) {
        try {
            body(i);
        } catch (...) {
#pragma omp critical(mla_parallel_for_each_failure)
            if (!failure)
                failure = std::current_exception();
        }
    }
    if (failure)
        std::rethrow_exception(failure);
}

} // namespace mla
