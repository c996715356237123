#pragma once

#include "pipeline/execution_context.h"
#include "util/job_control.h"

#include <QFuture>
#include <QList>
#include <QObject>
#include <QString>

#include <functional>
#include <memory>

namespace mla {

// The one shape of every background job in the workbench (loading, analysis, conversion, sanity check, export,
// sessions): start, cancel, progress with an ETA, one typed result signal in the subclass, failed, finished.
// The work runs on the thread pool with an ExecutionContext: a JobControl whose cancel flag cancel() sets, and the
// compute backend the job was given (setBackend) when it started; progress is forwarded through queued signals at
// most every 50 ms. A backend set while a run is going applies from the next start on. Starting again supersedes the running work: it is cancelled and whatever it
// still delivers is dropped. Results of cancelled work are dropped too, so a cancelled job leaves nothing behind.
// The destructor cancels and waits, so work never outlives its Job.
class Job : public QObject {
    Q_OBJECT
public:
    explicit Job(QObject* parent = nullptr);
    ~Job() override;

    enum class Outcome { None, Succeeded, Failed, Cancelled };

    bool isRunning() const { return m_current != nullptr; }
    // The backend later runs compute on (null: the CPU).
    void setBackend(std::shared_ptr<const ComputeBackend> backend) { m_backend = std::move(backend); }
    QString title() const { return m_title; }
    // How the last finished run ended (valid in slots connected to finished()).
    Outcome lastOutcome() const { return m_outcome; }

    // Called on the worker thread with every progress report of later runs, before throttling (tests use it to
    // cancel at an exact point; logging could use it too). Set it before start().
    using ProgressHook = std::function<void(double fraction, const std::string& stage)>;
    void setWorkerProgressHook(ProgressHook hook) { m_hook = std::move(hook); }

public Q_SLOTS:
    // Thread-safe: may be called from any thread (tests cancel from inside a progress callback).
    void cancel();

Q_SIGNALS:
    void started(const QString& title);
    void progressChanged(double fraction, const QString& stage, double etaSeconds);
    void failed(const QString& message);
    void cancelled();
    void finished(); // after the result, the failure or the cancellation of the current run

protected:
    // `work` runs on a pool thread; `deliver` runs on this object's thread with the result, unless the run was
    // superseded or cancelled meanwhile. An mla::Error or any std::exception becomes failed(message).
    template <typename Result>
    void run(const QString& title, std::function<Result(const ExecutionContext&)> work, std::function<void(Result&&)> deliver)
    {
        startWork(title, [work = std::move(work), deliver = std::move(deliver)](const ExecutionContext& context) -> std::function<void()> {
            auto result = std::make_shared<Result>(work(context));
            return [deliver, result]() { deliver(std::move(*result)); };
        });
    }

private:
    struct Run;
    using Work = std::function<std::function<void()>(const ExecutionContext&)>;
    void startWork(const QString& title, Work work);
    void finishRun(const std::shared_ptr<Run>& run);

    std::shared_ptr<Run> m_current;
    QString m_title;
    Outcome m_outcome = Outcome::None;
    ProgressHook m_hook;
    std::shared_ptr<const ComputeBackend> m_backend;
    QList<QFuture<void>> m_futures;
    quint64 m_nextId = 0;
};

} // namespace mla
