#include "jobs/heal_job.h"

#include <QMetaObject>
#include <QPointer>

namespace mla {

void HealJob::start(const OpenedModel& model, const ConversionOutcome& conversion, const pipeline::HealRequest& request)
{
    if (m_stop)
        m_stop->store(true); // a superseded run stops at its next step (its result is dropped anyway)
    auto stop = std::make_shared<std::atomic<bool>>(false);
    m_stop = stop;
    const quint64 generation = ++m_generation;
    pipeline::HealRequest keep = request;
    keep.options.onCancel = HealCancelPolicy::KeepHealedLayers;
    QPointer<HealJob> self(this);
    run<pipeline::HealedConversion>(
        tr("Healing"),
        [model, conversion, keep, stop, generation, self](const ExecutionContext& ctx) {
            // The healer polls `stop` (keep what is finished); the job's own cancel reaches it through progress.
            const JobControl outer = ctx.job();
            const ExecutionContext context(ctx.sharedBackend(),
                                           JobControl(stop.get(), [outer](double f, const std::string& stage) { outer.progress(f, stage); }));
            const HealData data = pipeline::prepareHealing(model, keep, context.slice(0.0, 0.05));
            const pipeline::HealStartObserver observer = [self, generation](const HealProgress& p, const std::string& start) {
                const QString name = QString::fromStdString(start);
                QMetaObject::invokeMethod(
                    self.data(),
                    [self, generation, p, name]() {
                        if (self && self->m_generation == generation && self->isRunning())
                            Q_EMIT self->stepped(p, name);
                    },
                    Qt::QueuedConnection);
            };
            return pipeline::healConversion(model, conversion, keep, data, context.slice(0.05, 1.0), observer);
        },
        [this](pipeline::HealedConversion&& o) {
            // The session and the views need the report, not a second copy of the weights.
            o.heal.healed.model = Model();
            Q_EMIT healed(o);
        });
}

void HealJob::stopKeepingHealed()
{
    if (m_stop && isRunning())
        m_stop->store(true);
}

} // namespace mla
