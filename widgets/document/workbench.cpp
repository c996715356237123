#include "document/workbench.h"

#include "analysis/analyzer.h"
#include "document/settings_command.h"
#include "jobs/allocation_job.h"
#include "jobs/analysis_job.h"
#include "jobs/conversion_job.h"
#include "jobs/devices.h"
#include "jobs/export_job.h"
#include "jobs/model_load_job.h"
#include "ui_support/view_data.h"
#include "util/error.h"

#include <QFileInfo>
#include <QUndoStack>

namespace mla {
namespace {

constexpr int kReselectDelayMs = 250;

} // namespace

Workbench::Workbench(QObject* parent) : QObject(parent)
{
    registerJobMetaTypes();
    m_undo = new QUndoStack(this);
    m_reselectTimer.setSingleShot(true);
    m_reselectTimer.setInterval(kReselectDelayMs);
    connect(&m_reselectTimer, &QTimer::timeout, this, &Workbench::startReselect);

    m_loadJob = new ModelLoadJob(this);
    m_analysisJob = new AnalysisJob(this);
    m_reselectJob = new ReselectJob(this);
    m_conversionJob = new ConversionJob(this);
    m_sanityJob = new SanityJob(this);
    m_exportJob = new ExportJob(this);
    m_sessionJob = new SessionJob(this);
    m_allocationJob = new AllocationJob(this);
    for (Job* job : {static_cast<Job*>(m_allocationJob), static_cast<Job*>(m_loadJob), static_cast<Job*>(m_analysisJob), static_cast<Job*>(m_reselectJob),
                     static_cast<Job*>(m_conversionJob), static_cast<Job*>(m_sanityJob), static_cast<Job*>(m_exportJob),
                     static_cast<Job*>(m_sessionJob)})
        track(job);

    connect(m_loadJob, &ModelLoadJob::loaded, this, [this](const LoadedModel& m) {
        setModel(m, m_loadJob->property("path").toString());
        for (const QString& w : m.warnings)
            Q_EMIT statusMessage(w);
    });
    connect(m_analysisJob, &AnalysisJob::analysed, this, [this](const AnalysisPtr& a) {
        setAnalysis(a);
        Q_EMIT statusMessage(tr("Analysis done: %1").arg(QString::fromStdString(a->calibrationDescription)));
    });
    connect(m_reselectJob, &ReselectJob::reselected, this, [this](const AnalysisPtr& a) {
        m_analysis = a;
        recomputePreview();
        Q_EMIT analysisChanged();
        Q_EMIT previewChanged();
    });
    connect(m_conversionJob, &ConversionJob::converted, this, [this](const ConversionOutcome& o) {
        m_conversion = o;
        m_convertedWith = o.plan.settings;
        m_sanity.reset();
        Q_EMIT conversionChanged();
        Q_EMIT sanityChanged();
        Q_EMIT statusMessage(tr("Converted in %1 s").arg(o.seconds, 0, 'f', 1));
        if (m_autoSanity)
            runSanityCheck();
    });
    connect(m_allocationJob, &AllocationJob::allocated, this, [this](const Allocation& a) {
        SettingsSnapshot after = m_settings;
        after.conversion.ropePairsPerLayer = a.pairs;
        after.conversion.latentPerLayer = a.latent;
        pushSettings(after, tr("Allocate per layer"), -1, false);
        Q_EMIT statusMessage(tr("Allocated %1 elements per token over %2 layers (predicted cost %3)")
                                 .arg(a.elements)
                                 .arg(a.latent.size())
                                 .arg(a.totalCost, 0, 'g', 4));
    });
    connect(m_sanityJob, &SanityJob::checked, this, [this](const SanityReport& r) {
        m_sanity = r;
        Q_EMIT sanityChanged();
        Q_EMIT statusMessage(tr("Sanity check: perplexity %1 → %2").arg(r.originalPpl, 0, 'f', 3).arg(r.convertedPpl, 0, 'f', 3));
    });
    connect(m_exportJob, &ExportJob::exported, this, [this](const ExportOutcome& o) {
        m_lastExport = o.folder;
        Q_EMIT exported(o.folder);
        Q_EMIT statusMessage(tr("Exported to %1 (%2 MB)").arg(o.folder).arg(static_cast<double>(o.report.bytesWritten) / 1e6, 0, 'f', 1));
    });
    connect(m_sessionJob, &SessionJob::saved, this, [this](const QString& path) {
        Q_EMIT sessionSaved(path);
        Q_EMIT statusMessage(tr("Session saved to %1").arg(path));
    });
    connect(m_sessionJob, &SessionJob::loaded, this, [this](const QString& path, const SessionContent& c) {
        const bool sameModel = hasModel() && c.analysis && modelFingerprint(*m_model.model) == c.analysis->modelFingerprint;
        if (sameModel) {
            setAnalysis(c.analysis);
        } else {
            setAnalysisOnly(c.analysis, c.parameterCount);
            Q_EMIT statusMessage(tr("Session %1 opened without its model: the preview works; open %2 to convert")
                                     .arg(path, QString::fromStdString(c.analysis->modelPath)));
        }
        SettingsSnapshot s = m_settings;
        s.conversion = c.settings;
        applySnapshot(s);
        m_undo->clear();
        if (c.sanity) {
            m_sanity = c.sanity;
            Q_EMIT sanityChanged();
        }
    });
}

Workbench::~Workbench()
{
    for (Job* job : m_jobs)
        job->cancel();
}

void Workbench::track(Job* job)
{
    m_jobs.append(job);
    connect(job, &Job::started, this, [this](const QString& title) {
        Q_EMIT jobStarted(title);
        Q_EMIT busyChanged(isBusy());
    });
    connect(job, &Job::progressChanged, this, &Workbench::jobProgress);
    connect(job, &Job::failed, this, [this, job](const QString& message) {
        QString title = tr("%1 failed").arg(job->title());
        if (job == m_loadJob)
            title = tr("Cannot open the model");
        Q_EMIT errorOccurred(title, message);
    });
    connect(job, &Job::cancelled, this, [this, job]() { Q_EMIT statusMessage(tr("%1: cancelled").arg(job->title())); });
    connect(job, &Job::finished, this, [this, job]() {
        Q_EMIT jobFinished(job->title(), job->lastOutcome() == Job::Outcome::Succeeded);
        Q_EMIT busyChanged(isBusy());
    });
}

QString Workbench::modelName() const
{
    if (!m_modelPath.isEmpty())
        return QFileInfo(m_modelPath).fileName();
    if (m_analysis)
        return QFileInfo(QString::fromStdString(m_analysis->modelPath)).fileName();
    return QString();
}

const ModelConfig* Workbench::config() const
{
    if (m_model.model)
        return &m_model.model->config;
    if (m_analysisOnlyConfig)
        return &*m_analysisOnlyConfig;
    return nullptr;
}

bool Workbench::conversionMatchesSettings() const
{
    if (!m_conversion)
        return false;
    const ConversionSettings& a = m_convertedWith;
    const ConversionSettings& b = m_settings.conversion;
    return a.strategy == b.strategy && a.ropePairs == b.ropePairs && a.ropePairsPerLayer == b.ropePairsPerLayer
        && a.uniformStart == b.uniformStart && a.method == b.method && a.latentDim == b.latentDim
        && a.latentPerLayer == b.latentPerLayer && a.targetSaving == b.targetSaving && a.sigma == b.sigma
        && a.activationAware == b.activationAware && a.balanceKeyValue == b.balanceKeyValue && a.refit == b.refit
        && a.allocate == b.allocate && a.chooseBalance == b.chooseBalance;
}

std::int64_t Workbench::resolvedLatent() const
{
    return globalLatent(m_settings);
}

std::int64_t Workbench::globalLatent(const SettingsSnapshot& snapshot) const
{
    const ConversionSettings& s = snapshot.conversion;
    if (s.method == LatentMethod::None)
        return 0;
    if (s.latentDim > 0)
        return s.latentDim;
    const ModelConfig* c = config();
    if (!c)
        return 0;
    try {
        return latentForSaving(*c, ropePairsForLayer(*c, s, 0), s.method, s.targetSaving);
    } catch (const Error&) {
        return 0;
    }
}

void Workbench::normalise(SettingsSnapshot& s) const
{
    const ModelConfig* c = config();
    if (!c)
        return;
    s.lockedLayers.resize(static_cast<std::size_t>(c->layers), false);
    if (s.conversion.allocate)
        return; // the per-layer lists come from the allocation (locks are honoured when it runs)
    if (std::find(s.lockedLayers.begin(), s.lockedLayers.end(), true) == s.lockedLayers.end()) {
        s.conversion.latentPerLayer.clear();
        return;
    }
    const std::int64_t global = globalLatent(s);
    if (global <= 0)
        return; // unreachable settings: the preview reports the problem
    std::vector<std::int64_t> current = s.conversion.latentPerLayer;
    if (current.size() != static_cast<std::size_t>(c->layers))
        current.assign(static_cast<std::size_t>(c->layers), global);
    s.conversion.latentPerLayer = ui::latentsWithLocks(c->layers, global, current, s.lockedLayers);
}

void Workbench::resetAllocation(SettingsSnapshot& s) const
{
    // Until the allocation runs again the layers are uniform, except the locked ones, which keep their width.
    const ModelConfig* c = config();
    const std::int64_t global = c ? globalLatent(s) : 0;
    s.conversion.latentPerLayer.clear();
    if (global > 0)
        s.conversion.latentPerLayer = ui::latentsWithLocks(c->layers, global, previewLatents(), s.lockedLayers);
}

std::vector<std::int64_t> Workbench::previewLatents() const
{
    std::vector<std::int64_t> out;
    for (const auto& l : m_preview.layers)
        out.push_back(l.latentK + l.latentV);
    return out;
}

std::int64_t Workbench::resolvedRopePairs() const
{
    if (const ModelConfig* c = config())
        return ropePairsForLayer(*c, m_settings.conversion, 0);
    return m_settings.conversion.ropePairs;
}

void Workbench::setContextLength(std::int64_t n)
{
    if (n == m_contextLength || n < 1)
        return;
    m_contextLength = n;
    Q_EMIT memoryParametersChanged();
}

void Workbench::setBatchSize(std::int64_t n)
{
    if (n == m_batch || n < 1)
        return;
    m_batch = n;
    Q_EMIT memoryParametersChanged();
}

void Workbench::setDevice(const QString& id)
{
    if (id == m_device)
        return;
    m_device = id;
    const QString message = selectDevice(id);
    if (!message.isEmpty())
        Q_EMIT statusMessage(message);
}

void Workbench::setCacheFormat(CacheFormat f)
{
    if (f == m_cacheFormat)
        return;
    m_cacheFormat = f;
    Q_EMIT memoryParametersChanged();
}

bool Workbench::isBusy() const
{
    return m_loadJob->isRunning() || m_analysisJob->isRunning() || m_allocationJob->isRunning() || m_conversionJob->isRunning() || m_sanityJob->isRunning()
        || m_exportJob->isRunning() || m_sessionJob->isRunning();
}

QString Workbench::busyTitle() const
{
    for (Job* job : m_jobs) {
        if (job->isRunning())
            return job->title();
    }
    return QString();
}

// ---------------------------------------------------------------------------------------------------- jobs

void Workbench::openModel(const QString& path)
{
    for (Job* job : {static_cast<Job*>(m_analysisJob), static_cast<Job*>(m_reselectJob), static_cast<Job*>(m_conversionJob),
                     static_cast<Job*>(m_sanityJob)})
        job->cancel();
    m_loadJob->setProperty("path", path);
    m_loadJob->start(path);
}

void Workbench::analyze()
{
    if (!hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to analyse"), tr("Open a model first (File > Open)."));
        return;
    }
    m_reselectTimer.stop();
    m_reselectJob->cancel();
    AnalysisOptions options;
    options.calibration = m_settings.calibration;
    options.settings = m_settings.conversion;
    m_analysisJob->start(m_model, options);
}

void Workbench::convert()
{
    if (!hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to convert"), tr("Open a model first (File > Open)."));
        return;
    }
    if (!m_preview.problem.empty()) {
        Q_EMIT errorOccurred(tr("These settings cannot be converted"), QString::fromStdString(m_preview.problem));
        return;
    }
    if (!m_analysis && ropeStrategyNeedsScores(m_settings.conversion.strategy)) {
        Q_EMIT errorOccurred(tr("Analysis needed"),
                             tr("The %1 strategy ranks frequency pairs by their calibration scores: run Analyze (F5) first.")
                                 .arg(QString::fromUtf8(ropeStrategyName(m_settings.conversion.strategy).data())));
        return;
    }
    m_conversionJob->start(m_model.model, m_analysis, m_settings.conversion, allocationRequest());
}

AllocationRequest Workbench::allocationRequest() const
{
    AllocationRequest r;
    r.budget = m_preview.kv.convertedTotal;
    r.locked = m_settings.lockedLayers;
    for (const auto& l : m_preview.layers) {
        r.lockedLatent.push_back(l.latentK + l.latentV);
        r.lockedPairs.push_back(l.ropePairs);
    }
    r.locked.resize(r.lockedLatent.size(), false);
    return r;
}

void Workbench::allocate()
{
    if (!hasModel() || !m_analysis) {
        Q_EMIT errorOccurred(tr("Analysis needed"), tr("The allocation measures each layer on the analysis's calibration: run Analyze (F5) first."));
        return;
    }
    if (!m_preview.problem.empty()) {
        Q_EMIT errorOccurred(tr("These settings cannot be allocated"), QString::fromStdString(m_preview.problem));
        return;
    }
    m_allocationJob->start(m_model.model, m_analysis, m_settings.conversion, allocationRequest());
}

void Workbench::runSanityCheck()
{
    if (!m_conversion || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to check"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    m_sanityJob->start(m_model, m_conversion->converted, m_sanityOptions);
}

void Workbench::exportTo(const QString& folder, bool force)
{
    if (!m_conversion || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to export"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    m_exportJob->start(m_model.model, m_conversion->converted, folder, force);
}

void Workbench::saveSession(const QString& path, bool force)
{
    if (!m_analysis) {
        Q_EMIT errorOccurred(tr("Nothing to save"), tr("A session stores an analysis: run Analyze (F5) first."));
        return;
    }
    m_sessionJob->save({m_analysis, m_settings.conversion, m_sanity, m_parameterCount}, path, force);
}

void Workbench::openSession(const QString& path)
{
    m_sessionJob->load(path);
}

void Workbench::cancel()
{
    m_reselectTimer.stop();
    for (Job* job : m_jobs)
        job->cancel();
}

// ---------------------------------------------------------------------------------------------------- state

void Workbench::defaultSettingsFor(const ModelConfig& config)
{
    ConversionSettings& s = m_settings.conversion;
    s.ropePairs = defaultRopePairs(config);
    s.ropePairsPerLayer.clear();
    s.latentPerLayer.clear();
    s.uniformStart = std::clamp<std::int64_t>(s.uniformStart, 0, std::max<std::int64_t>(config.pairsPerHead() - 1, 0));
    if (!(s.targetSaving > 0.0 && s.targetSaving < 1.0))
        s.targetSaving = 0.75;
    s.latentDim = -1; // follow the target saving until the user sets a width
    m_settings.lockedLayers.assign(static_cast<std::size_t>(config.layers), false);
}

void Workbench::setModel(const LoadedModel& model, const QString& path)
{
    m_model = model;
    m_modelPath = path;
    m_parameterCount = model.model->parameterCount();
    m_analysis.reset();
    m_analysisOnlyConfig.reset();
    m_conversion.reset();
    m_sanity.reset();
    m_lastExport.clear();
    defaultSettingsFor(model.model->config);
    m_undo->clear();
    recomputePreview();
    Q_EMIT modelChanged();
    Q_EMIT analysisChanged();
    Q_EMIT conversionChanged();
    Q_EMIT sanityChanged();
    Q_EMIT settingsChanged();
    Q_EMIT previewChanged();
    Q_EMIT statusMessage(tr("Opened %1").arg(path));
}

void Workbench::setAnalysis(const AnalysisPtr& analysis)
{
    m_analysis = analysis;
    recomputePreview();
    Q_EMIT analysisChanged();
    Q_EMIT previewChanged();
    scheduleReselect();
}

void Workbench::setAnalysisOnly(const AnalysisPtr& analysis, std::int64_t parameterCount)
{
    m_loadJob->cancel();
    m_model = LoadedModel();
    m_modelPath.clear();
    m_parameterCount = parameterCount;
    m_analysisOnlyConfig = analysis->config;
    m_analysis = analysis;
    m_conversion.reset();
    m_sanity.reset();
    if (m_settings.lockedLayers.size() != static_cast<std::size_t>(analysis->config.layers))
        defaultSettingsFor(analysis->config);
    m_undo->clear();
    recomputePreview();
    Q_EMIT modelChanged();
    Q_EMIT analysisChanged();
    Q_EMIT conversionChanged();
    Q_EMIT sanityChanged();
    Q_EMIT settingsChanged();
    Q_EMIT previewChanged();
}

void Workbench::recomputePreview()
{
    const ModelConfig* c = config();
    if (!c) {
        m_preview = ConversionPreview();
        m_selections.clear();
        m_selectionKey.reset();
        return;
    }
    if (m_analysis)
        m_preview = previewConversion(*m_analysis, m_settings.conversion, m_parameterCount);
    else
        m_preview = ui::previewWithoutAnalysis(*c, m_settings.conversion, m_parameterCount);
    updateSelections(*c);
}

void Workbench::updateSelections(const ModelConfig& config)
{
    const ConversionSettings& s = m_settings.conversion;
    const AnalysisResult* analysis = m_analysis.get();
    SelectionKey key{m_analysis, config.layers, config.kvHeads, config.headDim, s.strategy, s.ropePairs, s.ropePairsPerLayer, s.uniformStart};
    if (m_selectionKey && *m_selectionKey == key)
        return;
    m_selectionKey = key;
    m_selections.clear();
    if (!analysis && ropeStrategyNeedsScores(s.strategy))
        return;
    try {
        m_selections = selectPairs(config, s, analysis);
    } catch (const Error&) {
        m_selections.clear();
    }
}

void Workbench::scheduleReselect()
{
    if (m_analysis && hasModel() && !m_preview.selectionMatchesAnalysis && m_preview.problem.empty())
        m_reselectTimer.start();
    else
        m_reselectTimer.stop();
}

void Workbench::startReselect()
{
    if (m_analysis && hasModel() && !m_preview.selectionMatchesAnalysis && !m_analysisJob->isRunning())
        m_reselectJob->start(m_analysis, m_model.model, m_settings.conversion);
}

// ---------------------------------------------------------------------------------------------------- settings

void Workbench::pushSettings(SettingsSnapshot after, const QString& what, int mergeId, bool followLocks)
{
    if (followLocks)
        normalise(after);
    m_undo->push(new SettingsCommand(this, m_settings, after, what, mergeId));
}

void Workbench::applySnapshot(const SettingsSnapshot& snapshot)
{
    m_settings = snapshot;
    recomputePreview();
    Q_EMIT settingsChanged();
    Q_EMIT previewChanged();
    scheduleReselect();
}

void Workbench::changeSettings(const ConversionSettings& settings, const QString& what, int mergeId)
{
    SettingsSnapshot after = m_settings;
    after.conversion = settings;
    pushSettings(after, what, mergeId);
}

void Workbench::changeCalibration(const CalibrationOptions& calibration, const QString& what)
{
    SettingsSnapshot after = m_settings;
    after.calibration = calibration;
    pushSettings(after, what, -1);
}

void Workbench::setGlobalLatent(std::int64_t latent, int mergeId)
{
    SettingsSnapshot after = m_settings;
    after.conversion.latentDim = latent;
    after.conversion.ropePairsPerLayer.clear(); // a global move makes the layers uniform again (locks aside)
    if (after.conversion.allocate)
        resetAllocation(after); // the budget moved: allocate again
    pushSettings(after, tr("Latent width %1").arg(latent), mergeId);
}

void Workbench::setTargetSaving(double saving, int mergeId)
{
    SettingsSnapshot after = m_settings;
    after.conversion.latentDim = -1;
    after.conversion.targetSaving = saving;
    after.conversion.ropePairsPerLayer.clear();
    if (after.conversion.allocate)
        resetAllocation(after);
    pushSettings(after, tr("Target saving %1%").arg(saving * 100.0, 0, 'f', 1), mergeId);
}

void Workbench::setLayerLatent(int layer, std::int64_t latent, int mergeId)
{
    const ModelConfig* c = config();
    if (!c || layer < 0 || layer >= c->layers || latent < 1)
        return;
    SettingsSnapshot after = m_settings;
    after.lockedLayers.resize(static_cast<std::size_t>(c->layers), false);
    after.lockedLayers[static_cast<std::size_t>(layer)] = true;
    std::vector<std::int64_t> current = previewLatents();
    current.resize(static_cast<std::size_t>(c->layers), resolvedLatent());
    current[static_cast<std::size_t>(layer)] = latent;
    after.conversion.latentPerLayer = current;
    pushSettings(after, tr("Layer %1 latent %2").arg(layer).arg(latent), mergeId);
}

void Workbench::setLayerLocked(int layer, bool locked)
{
    const ModelConfig* c = config();
    if (!c || layer < 0 || layer >= c->layers)
        return;
    SettingsSnapshot after = m_settings;
    after.lockedLayers.resize(static_cast<std::size_t>(c->layers), false);
    after.lockedLayers[static_cast<std::size_t>(layer)] = locked;
    after.conversion.latentPerLayer = previewLatents();
    if (!locked && after.conversion.allocate) {
        // Under allocation the per-layer list is kept as it is (normalise leaves it alone), so the released layer
        // goes back to the global width here; the other layers keep what the allocation gave them.
        const std::int64_t global = globalLatent(after);
        if (global > 0 && static_cast<std::size_t>(layer) < after.conversion.latentPerLayer.size())
            after.conversion.latentPerLayer[static_cast<std::size_t>(layer)] = global;
    }
    pushSettings(after, locked ? tr("Lock layer %1").arg(layer) : tr("Unlock layer %1").arg(layer), -1);
}

} // namespace mla
