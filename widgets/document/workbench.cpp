#include "document/workbench.h"

#include "document/settings_command.h"
#include "jobs/allocation_job.h"
#include "jobs/analysis_job.h"
#include "jobs/conversion_job.h"
#include "jobs/devices.h"
#include "jobs/export_job.h"
#include "jobs/gguf_export_job.h"
#include "jobs/heal_job.h"
#include "jobs/model_load_job.h"
#include "jobs/recovery_job.h"
#include "jobs/sanity_job.h"
#include "jobs/session_job.h"
#include "conversion/settings_validation.h"
#include "conversion/settings_warnings.h"
#include "engine/kv_cache_format.h"
#include "formats/gguf.h"
#include "heal/heal_options.h"
#include "settings/settings_rules.h"
#include "util/error.h"

#include <QFileInfo>
#include <QRegularExpression>
#include <QUndoStack>

namespace mla {
namespace {

constexpr int kReselectDelayMs = 250;

QString sentence(const std::string& text)
{
    QString s = QString::fromStdString(text);
    if (!s.isEmpty())
        s[0] = s[0].toUpper();
    return s;
}

} // namespace

QString Workbench::ggufReportText(const GgufExportReport& r)
{
    const QString file = QString::fromStdString(r.file.string());
    QString text = tr("Exported %1: %2, %3 tensors in %4, %5 MB, %6 KV values per token")
                       .arg(file, QString::fromStdString(r.architecture))
                       .arg(r.tensors)
                       .arg(QString::fromStdString(ggmlTypeName(static_cast<std::uint32_t>(r.weights))))
                       .arg(static_cast<double>(r.bytesWritten) / 1e6, 0, 'f', 1)
                       .arg(r.kvValuesPerToken);
    if (!r.keptInF16.empty())
        text += tr("; %n matrix/matrices kept in F16 (rows not whole blocks)", nullptr, static_cast<int>(r.keptInF16.size()));
    for (const std::string& note : r.notes)
        text += QStringLiteral("; ") + QString::fromStdString(note);
    // Quoted for a shell when the path needs it, so the command can be copied as it is.
    QString shellFile = file;
    if (file.contains(QRegularExpression(QStringLiteral("[^A-Za-z0-9_./+=:@%-]"))))
        shellFile = QLatin1Char('\'') + QString(file).replace(QStringLiteral("'"), QStringLiteral("'\\''")) + QLatin1Char('\'');
    text += tr(". Run it: llama-cli -m %1 -p \"Once upon a time\" -n 64 --temp 0").arg(shellFile);
    return text;
}

template <typename J>
J* Workbench::makeJob(Scope scope)
{
    J* job = new J(this);
    m_jobs.append({job, scope});
    job->setBackend(m_backend);
    connect(job, &Job::started, this, [this](const QString& title) {
        Q_EMIT jobStarted(title);
        Q_EMIT busyChanged(isBusy());
    });
    connect(job, &Job::progressChanged, this, &Workbench::jobProgress);
    connect(job, &Job::failed, this, [this, job](const QString& message) {
        QString title = tr("%1 failed").arg(job->title());
        if (static_cast<Job*>(job) == m_loadJob)
            title = tr("Cannot open the model");
        Q_EMIT errorOccurred(title, message);
    });
    connect(job, &Job::cancelled, this, [this, job]() { Q_EMIT statusMessage(tr("%1: cancelled").arg(job->title())); });
    connect(job, &Job::finished, this, [this, job]() {
        Q_EMIT jobFinished(job->title(), job->lastOutcome() == Job::Outcome::Succeeded);
        Q_EMIT busyChanged(isBusy());
    });
    return job;
}

Workbench::Workbench(QObject* parent) : QObject(parent)
{
    registerJobMetaTypes();
    // The workbench's check: longer generations than the CLI's convert --check, on its own held-out seed.
    m_sanityOptions.generationSteps = 64;
    m_sanityOptions.seed = 7;
    m_undo = new QUndoStack(this);
    m_reselectTimer.setSingleShot(true);
    m_reselectTimer.setInterval(kReselectDelayMs);
    connect(&m_reselectTimer, &QTimer::timeout, this, &Workbench::startReselect);

    m_loadJob = makeJob<ModelLoadJob>(Scope::Own);
    m_analysisJob = makeJob<AnalysisJob>(Scope::Document);
    m_reselectJob = makeJob<ReselectJob>(Scope::Document);
    m_allocationJob = makeJob<AllocationJob>(Scope::Document);
    m_presetAllocationJob = makeJob<AllocationJob>(Scope::Document);
    m_conversionJob = makeJob<ConversionJob>(Scope::Document);
    m_sanityJob = makeJob<SanityJob>(Scope::Document);
    m_healJob = makeJob<HealJob>(Scope::Document);
    m_healSanityJob = makeJob<SanityJob>(Scope::Document);
    m_exportJob = makeJob<ExportJob>(Scope::Own);
    m_ggufJob = makeJob<GgufExportJob>(Scope::Own);
    m_recoveryJob = makeJob<RecoveryJob>(Scope::Own);
    m_sessionSaveJob = makeJob<SessionJob>(Scope::Own);
    m_sessionLoadJob = makeJob<SessionJob>(Scope::Own);

    connect(m_loadJob, &ModelLoadJob::loaded, this, [this](const OpenedModel& m) {
        setModel(m, m_loadJob->property("path").toString());
        for (const std::string& w : m.warnings)
            Q_EMIT statusMessage(sentence(w));
    });
    connect(m_loadJob, &ModelLoadJob::probed, this, [this](const pipeline::ForwardProbe& p) {
        m_probe = p;
        Q_EMIT estimatesChanged();
    });
    connect(m_analysisJob, &AnalysisJob::analysed, this, [this](const AnalysisPtr& a) {
        if (!belongsToDocument(m_analysisJob))
            return;
        setAnalysis(a);
        m_unsavedResults = true;
        Q_EMIT statusMessage(tr("Analysis done: %1").arg(QString::fromStdString(a->calibrationDescription)));
    });
    connect(m_reselectJob, &ReselectJob::reselected, this, [this](const AnalysisPtr& a) {
        if (!belongsToDocument(m_reselectJob))
            return;
        m_analysis = a;
        recomputePreview();
        Q_EMIT analysisChanged();
        Q_EMIT previewChanged();
    });
    connect(m_conversionJob, &ConversionJob::converted, this, [this](const ConversionOutcome& o) {
        if (!belongsToDocument(m_conversionJob))
            return;
        m_conversion = o;
        m_sanity.reset();
        m_conversionCheck.reset();
        clearHeal();
        Q_EMIT conversionChanged();
        Q_EMIT sanityChanged();
        if (o.decompositionCheck)
            Q_EMIT statusMessage(tr("Converted in %1 s; %2").arg(o.seconds, 0, 'f', 1).arg(QString::fromStdString(decompositionCheckSummary(*o.decompositionCheck))));
        else
            Q_EMIT statusMessage(tr("Converted in %1 s").arg(o.seconds, 0, 'f', 1));
        if (m_autoSanity)
            runSanityCheck();
    });
    connect(m_allocationJob, &AllocationJob::allocated, this, [this](const Allocation& a) {
        // A result for a model that was closed meanwhile would write its per-layer lists into the new one.
        if (!belongsToDocument(m_allocationJob) || deepSeekTarget()) // the target changed meanwhile: no per-layer widths
            return;
        // The allocation minimises the measured attention-output error; the preview's closed-form error is another
        // measure and can go up: say so instead of presenting the change as an improvement.
        const bool activations = m_settings.conversion.activationAware && m_preview.meanActivationError >= 0;
        const double before = m_analysis && m_preview.problem.empty() ? (activations ? m_preview.meanActivationError : m_preview.meanWeightError) : -1.0;
        pushSettings(withAllocation(m_settings, a), tr("Allocate per layer"), -1, false);
        const double after = m_analysis && m_preview.problem.empty() ? (activations ? m_preview.meanActivationError : m_preview.meanWeightError) : -1.0;
        QString text = tr("Allocated %1 elements per token over %2 layers (measured attention-output cost %3)")
                           .arg(a.elements)
                           .arg(a.latent.size())
                           .arg(a.totalCost, 0, 'g', 4);
        if (before >= 0 && after > before * (1.0 + 1e-9))
            text += tr(". The predicted reconstruction error went UP, %1 → %2: the allocation minimises the measured "
                       "attention-output error, which this closed-form prediction does not see; Convert and the sanity check "
                       "tell which is better (Undo restores the uniform widths).")
                        .arg(before, 0, 'g', 3)
                        .arg(after, 0, 'g', 3);
        else if (before >= 0 && after >= 0)
            text += tr("; predicted reconstruction error %1 → %2").arg(before, 0, 'g', 3).arg(after, 0, 'g', 3);
        m_lastAllocationReport = text;
        Q_EMIT statusMessage(text);
    });
    connect(m_presetAllocationJob, &AllocationJob::allocated, this, [this](const Allocation& a) {
        if (!belongsToDocument(m_presetAllocationJob))
            return;
        if (!m_presetAllocation)
            return;
        m_presetAllocation->allocation = a;
        m_presetAllocation->analysis = m_analysis;
        Q_EMIT presetAllocationChanged();
        Q_EMIT statusMessage(tr("Measured preset %1's allocation: %2 elements per token over %3 layers (predicted cost %4)")
                                 .arg(QString::fromStdString(m_presetAllocation->preset))
                                 .arg(a.elements)
                                 .arg(a.latent.size())
                                 .arg(a.totalCost, 0, 'g', 4));
    });
    connect(m_sanityJob, &SanityJob::checked, this, [this](const CheckOutcome& o) {
        if (!belongsToDocument(m_sanityJob))
            return;
        m_sanity = o.report;
        m_conversionCheck = o;
        m_unsavedResults = true;
        Q_EMIT sanityChanged();
        Q_EMIT statusMessage(tr("Sanity check: perplexity %1 → %2").arg(o.report.originalPpl, 0, 'f', 3).arg(o.report.convertedPpl, 0, 'f', 3));
    });
    connect(m_healJob, &HealJob::stepped, this, &Workbench::healStepped);
    connect(m_healJob, &HealJob::healed, this, [this](const pipeline::HealedConversion& o) {
        if (!belongsToDocument(m_healJob))
            return;
        m_healed = o.conversion;
        m_healedCheck.reset();
        m_heal = SessionHeal{o.heal.options, o.heal.start, o.heal.healed.report, std::nullopt};
        Q_EMIT healChanged();
        const HealReport& r = o.heal.healed.report;
        QString text = tr("Healed %1 of %2 layers in %3 s").arg(r.layersHealed).arg(m_model.model->config.layers).arg(r.seconds, 0, 'f', 1);
        if (r.before && r.after)
            text += tr(": held-out KL %1 → %2").arg(r.before->kl, 0, 'f', 3).arg(r.after->kl, 0, 'f', 3);
        for (const std::string& note : o.notes)
            text += QStringLiteral("; ") + QString::fromStdString(note);
        Q_EMIT statusMessage(text);
        if (m_autoSanity)
            runHealedSanityCheck();
    });
    connect(m_healSanityJob, &SanityJob::checked, this, [this](const CheckOutcome& o) {
        if (!belongsToDocument(m_healSanityJob) || !m_heal)
            return;
        m_healedCheck = o;
        m_heal->sanity = o.report;
        Q_EMIT healChanged();
        Q_EMIT statusMessage(tr("Sanity check of the healed model: perplexity %1 → %2").arg(o.report.originalPpl, 0, 'f', 3).arg(o.report.convertedPpl, 0, 'f', 3));
    });
    connect(m_exportJob, &ExportJob::exported, this, [this](const ExportOutcome& o) {
        const QString folder = QString::fromStdString(o.folder.string());
        m_lastExport = folder;
        Q_EMIT exported(folder);
        Q_EMIT statusMessage(tr("Exported to %1 (%2 MB)").arg(folder).arg(static_cast<double>(o.report.bytesWritten) / 1e6, 0, 'f', 1));
    });
    connect(m_ggufJob, &GgufExportJob::exported, this, [this](const GgufExportReport& r) {
        m_lastGguf = QString::fromStdString(r.file.string());
        Q_EMIT ggufExported(r);
        Q_EMIT statusMessage(ggufReportText(r));
    });
    connect(m_recoveryJob, &RecoveryJob::recovered, this, [this](const QString& folder, double before, double after, const QString&) {
        Q_EMIT recovered(folder, before, after);
        Q_EMIT statusMessage(tr("Recovered into %1: held-out KL %2 → %3").arg(folder).arg(before, 0, 'f', 4).arg(after, 0, 'f', 4));
    });
    connect(m_sessionSaveJob, &SessionJob::saved, this, [this](const QString& path) {
        m_unsavedResults = false;
        m_undo->setClean();
        Q_EMIT sessionSaved(path);
        Q_EMIT statusMessage(tr("Session saved to %1").arg(path));
    });
    connect(m_sessionLoadJob, &SessionJob::loaded, this, [this](const QString& path, const SessionContent& c) {
        const bool sameModel = hasModel() && pipeline::sessionMatchesModel(c, *m_model.model);
        if (sameModel) {
            replaceDocument();
            m_conversionCheck.reset();
            setAnalysis(c.analysis);
        } else {
            setAnalysisOnly(c.analysis, c.parameterCount);
            Q_EMIT statusMessage(tr("Session %1 opened without its model: the preview works; open %2 to convert")
                                     .arg(path, QString::fromStdString(c.analysis->modelPath)));
        }
        Settings s = c.settings; // its target too: the views show the DeepSeek-V3 layout's widths when it is that one
        if (!c.calibrationStored)
            s.calibration = m_settings.calibration; // an older session holds no calibration settings: keep the user's
        if (const ModelConfig* config = this->config())
            normalise(s, *config);
        applySnapshot(s);
        m_undo->clear();
        if (c.sanity) {
            m_sanity = c.sanity;
            Q_EMIT sanityChanged();
        }
        if (c.heal) {
            // The report and settings only: a session holds no weights, so Heal again to export a healed model.
            clearHeal();
            m_heal = c.heal;
            m_healOptions = c.heal->options;
            Q_EMIT healChanged();
        }
        m_unsavedResults = false;
        Q_EMIT sessionOpened(path, sameModel ? QString() : QString::fromStdString(c.analysis->modelPath));
    });
}

Workbench::~Workbench()
{
    for (const TrackedJob& t : m_jobs)
        t.job->cancel();
}

void Workbench::forDocument(Job* job)
{
    job->setProperty("document", static_cast<qulonglong>(m_document));
}

bool Workbench::belongsToDocument(const Job* job) const
{
    return job->property("document").toULongLong() == m_document;
}

void Workbench::replaceDocument()
{
    ++m_document;
    m_reselectTimer.stop();
    for (const TrackedJob& t : m_jobs) {
        if (t.scope == Scope::Document)
            t.job->cancel();
    }
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

bool Workbench::hasUnsavedWork() const
{
    return m_analysis && (m_unsavedResults || !m_undo->isClean());
}

bool Workbench::conversionMatchesSettings() const
{
    return m_conversion && m_conversion->requested.conversion == m_settings.conversion;
}

QString Workbench::healUnavailableReason() const
{
    if (conversionIsDeepSeek())
        return tr("Healing trains the MHA2MLA layout's layers; this conversion is of the DeepSeek-V3 target, which has no "
                  "heal (choose the MHA2MLA target and convert again to heal).");
    return QString();
}

std::int64_t Workbench::resolvedLatent() const
{
    const ConversionSettings& s = m_settings.conversion;
    if (deepSeekTarget())
        return m_deepSeekWidths ? m_deepSeekWidths->kvLoraRank : (s.latentDim > 0 ? s.latentDim : 0);
    if (const ModelConfig* c = config())
        return globalLatent(s, *c);
    return s.method != LatentMethod::None && s.latentDim > 0 ? s.latentDim : 0;
}

std::int64_t Workbench::resolvedRopePairs() const
{
    if (deepSeekTarget()) // the pairs of the one shared RoPE head
        return m_deepSeekWidths ? m_deepSeekWidths->ropeDim / 2 : std::max<std::int64_t>(m_settings.conversion.ropePairs, 0);
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
    const DeviceSelection selection = selectDevice(id);
    setBackend(selection.backend);
    if (!selection.message.isEmpty())
        Q_EMIT statusMessage(selection.message);
}

void Workbench::setBackend(std::shared_ptr<const ComputeBackend> backend)
{
    m_backend = backend ? std::move(backend) : cpuBackendShared();
    for (const TrackedJob& t : m_jobs)
        t.job->setBackend(m_backend);
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
    for (const TrackedJob& t : m_jobs) {
        if (t.job->isRunning())
            return true;
    }
    return false;
}

QString Workbench::busyTitle() const
{
    for (const TrackedJob& t : m_jobs) {
        if (t.job->isRunning())
            return t.job->title();
    }
    return QString();
}

// ---------------------------------------------------------------------------------------------------- jobs

void Workbench::openModel(const QString& path)
{
    m_reselectTimer.stop();
    for (const TrackedJob& t : m_jobs) {
        if (t.scope == Scope::Document)
            t.job->cancel();
    }
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
    forDocument(m_analysisJob);
    m_analysisJob->start(m_model, m_settings);
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
    const ConversionSettings& s = m_settings.conversion;
    // The DeepSeek-V3 target calibrates for itself when there is no analysis (its shared RoPE head is chosen from
    // measured statistics, not from the strategy's scores).
    if (!m_analysis && ropeStrategyNeedsScores(s.strategy) && !deepSeekTarget()) {
        Q_EMIT errorOccurred(tr("Analysis needed"),
                             tr("The %1 strategy ranks frequency pairs by their calibration scores: run Analyze (F5) first.")
                                 .arg(QString::fromUtf8(ropeStrategyName(s.strategy).data())));
        return;
    }
    if (!m_analysis && pipeline::conversionNeedsAnalysis(s) && !deepSeekTarget()) {
        Q_EMIT errorOccurred(tr("Analysis needed"),
                             tr("These settings use the analysis's calibration (activation-aware decomposition, refits or "
                                "per-layer allocation): run Analyze (F5) first."));
        return;
    }
    forDocument(m_conversionJob);
    m_conversionJob->start(m_model, m_analysis, m_settings);
}

std::optional<pipeline::CostEstimate> Workbench::analysisEstimate() const
{
    if (!hasModel() || !m_probe)
        return std::nullopt;
    return pipeline::estimateAnalysis(m_model.model->config, m_parameterCount, m_settings, *m_probe);
}

std::optional<pipeline::CostEstimate> Workbench::conversionEstimate() const
{
    if (!hasModel() || !m_probe)
        return std::nullopt;
    return pipeline::estimateConversion(m_model.model->config, m_parameterCount, m_settings, m_analysis ? m_analysis->calibrationTokens : 0, *m_probe);
}

const Allocation* Workbench::presetAllocation(const std::string& preset) const
{
    const ModelConfig* c = config();
    if (!c || !m_presetAllocation || m_presetAllocation->preset != preset || m_presetAllocation->analysis != m_analysis
        || m_presetAllocation->allocation.latent.empty())
        return nullptr;
    const Settings wanted = presetSettings(m_settings, *c, preset);
    if (wanted.conversion != m_presetAllocation->settings.conversion || wanted.lockedLayers != m_presetAllocation->settings.lockedLayers)
        return nullptr;
    return &m_presetAllocation->allocation;
}

std::optional<PresetComparison> Workbench::comparison(const std::string& preset) const
{
    if (!m_analysis || deepSeekTarget() || preset.empty())
        return std::nullopt;
    try {
        return comparePreset(*m_analysis, m_settings, preset, presetAllocation(preset), m_parameterCount);
    } catch (const Error&) {
        return std::nullopt;
    }
}

void Workbench::measurePresetAllocation(const QString& name)
{
    const ModelConfig* c = config();
    if (!hasModel() || !m_analysis || !c) {
        Q_EMIT errorOccurred(tr("Analysis needed"), tr("The allocation measures each layer on the analysis's calibration: run Analyze (F5) first."));
        return;
    }
    Settings s;
    try {
        s = presetSettings(m_settings, *c, name.toStdString());
    } catch (const Error& e) {
        Q_EMIT errorOccurred(tr("Cannot compare"), QString::fromUtf8(e.what()));
        return;
    }
    if (const ConversionPreview p = previewConversion(*m_analysis, s.conversion, m_parameterCount); !p.problem.empty()) {
        Q_EMIT errorOccurred(tr("Preset %1 cannot be allocated with these widths").arg(name), QString::fromStdString(p.problem));
        return;
    }
    m_presetAllocation = MeasuredPresetAllocation{name.toStdString(), s, m_analysis, {}};
    forDocument(m_presetAllocationJob);
    m_presetAllocationJob->start(m_model, m_analysis, s);
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
    if (deepSeekTarget()) {
        Q_EMIT errorOccurred(tr("No per-layer allocation for the DeepSeek-V3 target"),
                             tr("The DeepSeek-V3 layout has one kv_lora_rank and one qk_rope_head_dim for every layer. With "
                                "\"Allocate per layer\" checked, Convert measures which split of the budget between them "
                                "works best instead."));
        return;
    }
    forDocument(m_allocationJob);
    m_allocationJob->start(m_model, m_analysis, m_settings);
}

void Workbench::runSanityCheck()
{
    if (!m_conversion || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to check"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    forDocument(m_sanityJob);
    m_sanityJob->start(m_model, m_conversion->converted, m_sanityOptions);
}

void Workbench::healConversion()
{
    if (!m_conversion || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to heal"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    if (const QString why = healUnavailableReason(); !why.isEmpty()) {
        Q_EMIT errorOccurred(tr("Cannot heal this conversion"), why);
        return;
    }
    try {
        validateHealOptions(m_healOptions); // refused before any work, as the CLI does
    } catch (const Error& e) {
        Q_EMIT errorOccurred(tr("These heal settings cannot be used"), QString::fromUtf8(e.what()));
        return;
    }
    forDocument(m_healJob);
    m_healJob->start(m_model, *m_conversion, {m_healOptions, m_healStart, 0});
}

void Workbench::stopHeal(bool keepHealed)
{
    if (keepHealed)
        m_healJob->stopKeepingHealed();
    else
        m_healJob->cancel();
}

bool Workbench::isHealing() const
{
    return m_healJob->isRunning();
}

void Workbench::runHealedSanityCheck()
{
    if (!m_healed || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to check"), tr("Heal the converted model first (Run > Heal)."));
        return;
    }
    forDocument(m_healSanityJob);
    m_healSanityJob->start(m_model, m_healed->converted, m_sanityOptions);
}

void Workbench::clearHeal()
{
    const bool had = m_heal || m_healed;
    m_heal.reset();
    m_healed.reset();
    m_healedCheck.reset();
    if (had)
        Q_EMIT healChanged();
}

void Workbench::exportTo(const QString& folder, bool force)
{
    if (!m_conversion || !hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to export"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    if (m_healed) // the healed model replaces the conversion it was healed from; its model card says how
        m_exportJob->start(m_model, *m_healed, folder, m_healedCheck, force);
    else
        m_exportJob->start(m_model, *m_conversion, folder, m_conversionCheck, force);
}

void Workbench::exportGgufTo(const QString& file, std::optional<GgmlType> weights, const QString& name, bool overwrite)
{
    if (!hasModel()) {
        Q_EMIT errorOccurred(tr("Nothing to export"), tr("Open a model first (File > Open)."));
        return;
    }
    GgufExportOptions options;
    options.file = file.toStdString();
    options.weights = weights;
    options.name = name.trimmed().toStdString();
    options.overwrite = overwrite;
    if (ggufExportsConversion())
        m_ggufJob->start(m_model, *m_conversion, options, m_conversionCheck);
    else
        m_ggufJob->start(m_model, options);
}

void Workbench::recoverExport(const pipeline::RecoveryRequest& request)
{
    m_recoveryJob->start(request);
}

void Workbench::saveSession(const QString& path, bool force)
{
    if (!m_analysis) {
        Q_EMIT errorOccurred(tr("Nothing to save"), tr("A session stores an analysis: run Analyze (F5) first."));
        return;
    }
    SessionContent content;
    content.analysis = m_analysis;
    content.settings = m_settings;
    content.sanity = m_sanity;
    content.heal = m_heal;
    content.parameterCount = m_parameterCount;
    m_sessionSaveJob->save(content, m_model.model, path, force);
}

void Workbench::openSession(const QString& path)
{
    m_sessionLoadJob->load(path);
}

void Workbench::cancel()
{
    m_reselectTimer.stop();
    for (const TrackedJob& t : m_jobs)
        t.job->cancel();
}

// ---------------------------------------------------------------------------------------------------- state

void Workbench::setModel(const OpenedModel& model, const QString& path)
{
    replaceDocument();
    m_model = model;
    m_modelPath = path;
    m_probe.reset(); // the new model's arrives right after (ModelLoadJob::probed)
    m_parameterCount = model.model->parameterCount();
    m_analysis.reset();
    m_analysisOnlyConfig.reset();
    m_conversion.reset();
    m_sanity.reset();
    m_conversionCheck.reset();
    clearHeal();
    m_lastExport.clear();
    m_unsavedResults = false;
    m_settings = defaultsFor(m_settings, model.model->config);
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
    replaceDocument();
    m_model = OpenedModel();
    m_modelPath.clear();
    m_probe.reset();
    m_parameterCount = parameterCount;
    m_analysisOnlyConfig = analysis->config;
    m_analysis = analysis;
    m_conversion.reset();
    m_sanity.reset();
    m_conversionCheck.reset();
    clearHeal();
    if (m_settings.lockedLayers.size() != static_cast<std::size_t>(analysis->config.layers))
        m_settings = defaultsFor(m_settings, analysis->config);
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
    m_warnings.clear();
    if (!c) {
        m_preview = ConversionPreview();
        m_selections.clear();
        m_selectionKey.reset();
        return;
    }
    if (deepSeekTarget()) {
        m_preview = deepSeekPreview(*c);
        for (const std::string& w : conversionWarnings(*c, m_preview, nullptr))
            m_warnings << sentence(w);
        // The per-KV-head selection of the mha2mla layout does not apply: the shared head's components are chosen
        // by the conversion from measured statistics.
        m_selections.clear();
        m_selectionKey.reset();
        return;
    }
    m_deepSeekWidths.reset();
    m_preview = previewSettings(*c, m_analysis.get(), m_settings.conversion, m_parameterCount);
    if (m_preview.problem.empty()) {
        // The conversion's own check, with the allowed range in its message: refused here, before any work.
        try {
            validateConversionSettings(*c, m_settings.conversion);
        } catch (const Error& e) {
            m_preview.problem = e.what();
        }
    }
    m_warnings.clear();
    for (const std::string& w : conversionWarnings(*c, m_preview, m_analysis.get()))
        m_warnings << sentence(w);
    updateSelections(*c);
}

ConversionPreview Workbench::deepSeekPreview(const ModelConfig& config)
{
    // Every layer has the same widths; the errors are measured by the conversion (the shared RoPE head and the fit
    // through the latent norm have no closed form from the spectra), so none is predicted here.
    m_deepSeekWidths.reset();
    ConversionPreview p;
    p.paramsOriginal = m_parameterCount;
    p.paramsConverted = -1;
    p.meanWeightError = -1.0;
    try {
        validateConversionSettings(config, m_settings.conversion);
        m_deepSeekWidths = mla::deepSeekWidths(config, m_settings.conversion);
    } catch (const Error& e) {
        p.problem = e.what();
        return p;
    }
    const DeepSeekWidths& w = *m_deepSeekWidths;
    for (std::int64_t l = 0; l < config.layers; ++l) {
        LayerPreview layer;
        layer.ropePairs = w.ropeDim / 2;
        layer.latentK = w.kvLoraRank;
        layer.weightError = -1.0;
        layer.activationError = -1.0;
        layer.twoNormDropped = -1.0;
        layer.kvOriginal = config.kvElementsPerTokenInLayer(l);
        layer.kvConverted = w.kvLoraRank + w.ropeDim;
        p.layers.push_back(layer);
        p.kv.originalPerLayer.push_back(layer.kvOriginal);
        p.kv.convertedPerLayer.push_back(layer.kvConverted);
        p.kv.originalTotal += layer.kvOriginal;
        p.kv.convertedTotal += layer.kvConverted;
        // The buffers as the engine caches them (kv_cache_format's DeepSeek case), so that bytes per token in any
        // cache format follow from the same accounting as the MHA2MLA layout's (they were left empty: "0 B").
        p.kv.originalBuffers.push_back(layerCacheBuffers(config, l, MlaForm::Absorbed));
        p.kv.convertedBuffers.push_back({{CacheRole::RopeKeys, w.ropeDim}, {CacheRole::LatentK, w.kvLoraRank}});
    }
    return p;
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
    if (m_analysis && hasModel() && !m_preview.selectionMatchesAnalysis && !m_analysisJob->isRunning()) {
        forDocument(m_reselectJob);
        m_reselectJob->start(m_model, m_analysis, m_settings.conversion);
    }
}

// ---------------------------------------------------------------------------------------------------- settings

void Workbench::pushSettings(Settings after, const QString& what, int mergeId, bool followLocks)
{
    if (followLocks) {
        if (const ModelConfig* c = config())
            normalise(after, *c);
    }
    m_undo->push(new SettingsCommand(this, m_settings, after, what, mergeId));
}

void Workbench::applySnapshot(const Settings& snapshot)
{
    m_settings = snapshot;
    recomputePreview();
    Q_EMIT settingsChanged();
    Q_EMIT previewChanged();
    scheduleReselect();
}

void Workbench::changeSettings(const ConversionSettings& settings, const QString& what, int mergeId)
{
    Settings after = m_settings;
    after.conversion = settings;
    pushSettings(after, what, mergeId);
}

void Workbench::changeCalibration(const CalibrationOptions& calibration, const QString& what)
{
    Settings after = m_settings;
    after.calibration = calibration;
    pushSettings(after, what, -1);
}

void Workbench::setTarget(ConversionTarget target, bool flashMla)
{
    const bool deepSeek = target == ConversionTarget::DeepSeekV3;
    flashMla = flashMla && deepSeek;
    const ConversionSettings& now = m_settings.conversion;
    if (now.target == target && now.flashMla == flashMla)
        return;
    Settings after = m_settings;
    ConversionSettings& s = after.conversion;
    if (s.target != target) {
        s.ropePairs = -1; // per KV head vs. the one shared head: the model's default for the new layout
        s.ropePairsPerLayer.clear();
        s.latentPerLayer.clear();
        std::fill(after.lockedLayers.begin(), after.lockedLayers.end(), false);
    }
    s.target = target;
    s.flashMla = flashMla;
    if (flashMla) { // FlashMLA fixes kv_lora_rank 512 + qk_rope_head_dim 64: no width or budget of the user's
        s.ropePairs = -1;
        s.latentDim = -1;
        s.kvBudget = -1;
    }
    if (deepSeek && s.method != LatentMethod::Joint) {
        s.method = LatentMethod::Joint; // the layout's one latent serves keys and values
        s.preset.clear();
    }
    if (deepSeek)
        s.decomposition = DecompositionMethod::Exact; // the layout decomposes exactly (its control is disabled there)
    const QString what = !deepSeek ? tr("Target MHA2MLA layout") : flashMla ? tr("Target DeepSeek-V3 layout, FlashMLA 512 + 64")
                                                                              : tr("Target DeepSeek-V3 layout");
    pushSettings(after, what, -1);
}

void Workbench::setGlobalLatent(std::int64_t latent, int mergeId)
{
    if (const ModelConfig* c = config())
        pushSettings(withGlobalLatent(m_settings, *c, latent), tr("Latent width %1").arg(latent), mergeId);
}

void Workbench::setTargetSaving(double saving, int mergeId)
{
    if (const ModelConfig* c = config())
        pushSettings(withTargetSaving(m_settings, *c, saving), tr("Target saving %1%").arg(saving * 100.0, 0, 'f', 1), mergeId);
}

void Workbench::setLayerLatent(int layer, std::int64_t latent, int mergeId)
{
    const ModelConfig* c = config();
    if (!c || layer < 0 || layer >= c->layers || latent < 1 || deepSeekTarget())
        return;
    pushSettings(withLayerLatent(m_settings, *c, layer, latent), tr("Layer %1 latent %2").arg(layer).arg(latent), mergeId);
}

void Workbench::setLayerLocked(int layer, bool locked)
{
    const ModelConfig* c = config();
    if (!c || layer < 0 || layer >= c->layers || deepSeekTarget())
        return;
    pushSettings(withLayerLocked(m_settings, *c, layer, locked), locked ? tr("Lock layer %1").arg(layer) : tr("Unlock layer %1").arg(layer), -1);
}

} // namespace mla
