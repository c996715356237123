#pragma once

#include "jobs/job.h"
#include "jobs/job_types.h"
#include "pipeline/heal.h"

#include <atomic>
#include <memory>

namespace mla {

// Heal: block-wise distillation of a conversion made in memory (pipeline::prepareHealing then
// pipeline::healConversion, as the CLI's convert --heal). Every training step and held-out evaluation is forwarded
// to the GUI thread (stepped) for the live plot; a run superseded by a newer one forwards nothing more.
// Two ways to stop: cancel() discards the heal (nothing is left behind, as for every job); stopKeepingHealed() ends
// it after the step in progress and delivers the model with the layers finished so far (healed() with
// report.cancelled set), or nothing (cancelled()) when no layer was finished yet. The model is never half a layer
// healed: core installs a layer only when it is finished.
class HealJob : public Job {
    Q_OBJECT
public:
    using Job::Job;
    void start(const OpenedModel& model, const ConversionOutcome& conversion, const pipeline::HealRequest& request);
    void stopKeepingHealed();

Q_SIGNALS:
    void stepped(const mla::HealProgress& progress, const QString& start);
    void healed(const mla::pipeline::HealedConversion& outcome);

private:
    std::shared_ptr<std::atomic<bool>> m_stop;
    quint64 m_generation = 0;
};

} // namespace mla
