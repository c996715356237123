#include "jobs/job.h"

#include "jobs/eta_estimator.h"

#include <QElapsedTimer>
#include <QMetaObject>
#include <QtConcurrent/QtConcurrentRun>

#include <atomic>
#include <exception>
#include <mutex>

namespace mla {

struct Job::Run {
    quint64 id = 0;
    std::atomic<bool> cancel{false};
    QElapsedTimer timer;
    // Touched only by the worker thread.
    qint64 lastReportMs = -1000;
    std::string lastStage;
    EtaEstimator eta;
};

Job::Job(QObject* parent) : QObject(parent) {}

Job::~Job()
{
    if (m_current)
        m_current->cancel.store(true);
    for (auto& f : m_futures)
        f.waitForFinished();
}

void Job::cancel()
{
    // m_current is only reassigned on the GUI thread; reading the pointer from a worker's progress callback races
    // only with a new start, whose run then gets cancelled instead, which is what the caller wanted anyway.
    if (auto run = std::atomic_load(&m_current))
        run->cancel.store(true);
}

void Job::startWork(const QString& title, Work work)
{
    if (m_current)
        m_current->cancel.store(true); // superseded: its result will be dropped
    m_futures.removeIf([](const QFuture<void>& f) { return f.isFinished(); });

    auto run = std::make_shared<Run>();
    run->id = ++m_nextId;
    run->timer.start();
    std::atomic_store(&m_current, run);
    m_title = title;
    Q_EMIT started(title);

    m_futures.append(QtConcurrent::run([this, run, title, hook = m_hook, backend = m_backend, work = std::move(work)]() {
        JobControl control(&run->cancel, [this, run, hook](double fraction, const std::string& stage) {
            if (hook)
                hook(fraction, stage);
            const qint64 now = run->timer.elapsed();
            run->eta.update(static_cast<double>(now) / 1000.0, fraction);
            if (now - run->lastReportMs < 50 && stage == run->lastStage && fraction < 1.0)
                return;
            run->lastReportMs = now;
            run->lastStage = stage;
            const double eta = run->eta.remainingSeconds();
            const QString text = QString::fromStdString(stage);
            QMetaObject::invokeMethod(
                this,
                [this, run, fraction, text, eta]() {
                    if (m_current == run)
                        Q_EMIT progressChanged(fraction, text, eta);
                },
                Qt::QueuedConnection);
        });
        std::function<void()> deliver;
        QString error;
        bool wasCancelled = false;
        try {
            deliver = work(ExecutionContext(backend, control));
        } catch (const Cancelled&) {
            wasCancelled = true;
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        } catch (...) {
            error = tr("unexpected failure in %1").arg(title);
        }
        QMetaObject::invokeMethod(
            this,
            [this, run, deliver = std::move(deliver), error, wasCancelled]() {
                if (m_current != run)
                    return; // superseded by a newer run
                finishRun(run);
                if (wasCancelled || run->cancel.load()) {
                    m_outcome = Outcome::Cancelled;
                    Q_EMIT cancelled();
                } else if (!error.isEmpty()) {
                    m_outcome = Outcome::Failed;
                    Q_EMIT failed(error);
                } else {
                    m_outcome = Outcome::Succeeded;
                    deliver();
                }
                Q_EMIT finished();
            },
            Qt::QueuedConnection);
    }));
}

void Job::finishRun(const std::shared_ptr<Run>& run)
{
    if (m_current == run)
        std::atomic_store(&m_current, std::shared_ptr<Run>());
}

} // namespace mla
