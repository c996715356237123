#pragma once

#include "util/error.h"

#include <atomic>
#include <functional>
#include <string>
#include <utility>

namespace mla {

// The one shape of every long job in core (calibration, analysis, conversion, export, evaluation): it reports
// progress through a callback and polls a cancellation flag at safe points, throwing Cancelled. The CLI passes a
// callback that prints; the GUI's workers forward both through Qt signals from their thread.
class JobControl {
public:
    using ProgressFn = std::function<void(double fraction, const std::string& stage)>;

    JobControl() = default;
    JobControl(const std::atomic<bool>* cancelFlag, ProgressFn progress)
        : m_cancel(cancelFlag), m_progress(std::move(progress)) {}

    void checkCancelled() const
    {
        if (m_cancel && m_cancel->load(std::memory_order_relaxed))
            throw Cancelled();
    }
    bool cancelled() const { return m_cancel && m_cancel->load(std::memory_order_relaxed); }

    // Reports progress of the current stage in [0, 1] and checks for cancellation.
    void progress(double fraction, const std::string& stage) const
    {
        checkCancelled();
        if (m_progress)
            m_progress(fraction, stage);
    }

    // A view of this control for a sub-task occupying [begin, end) of the overall progress.
    JobControl slice(double begin, double end) const
    {
        JobControl sub;
        sub.m_cancel = m_cancel;
        if (m_progress) {
            auto parent = m_progress;
            sub.m_progress = [parent, begin, end](double f, const std::string& stage) { parent(begin + (end - begin) * f, stage); };
        }
        return sub;
    }

    // The same control reporting every stage of a sub-task as one `stage` (a step whose own stages are too fine to
    // show, such as the tensors of an intermediate file).
    JobControl withStage(std::string stage) const
    {
        JobControl sub;
        sub.m_cancel = m_cancel;
        if (m_progress) {
            auto parent = m_progress;
            sub.m_progress = [parent, stage = std::move(stage)](double f, const std::string&) { parent(f, stage); };
        }
        return sub;
    }

private:
    const std::atomic<bool>* m_cancel = nullptr;
    ProgressFn m_progress;
};

} // namespace mla
