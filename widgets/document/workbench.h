#pragma once

#include "conversion/deepseek_converter.h"
#include "conversion/preview.h"
#include "formats/gguf_export.h"
#include "jobs/job_types.h"
#include "pipeline/cost_estimate.h"
#include "pipeline/heal.h"
#include "pipeline/recover.h"
#include "settings/preset_comparison.h"
#include "settings/settings.h"

#include <QObject>
#include <QString>
#include <QStringList>
#include <QTimer>

#include <optional>
#include <vector>

class QUndoStack;

namespace mla {

class Job;
class ModelLoadJob;
class AnalysisJob;
class ReselectJob;
class ConversionJob;
class SanityJob;
class ExportJob;
class RecoveryJob;
class SessionJob;
class AllocationJob;
class HealJob;
class GgufExportJob;

// The workbench's document: the open model, its analysis, the settings, the live preview, the converted model and
// its sanity report, and the jobs that produce them. Each job runs one pipeline action (core/pipeline/) with the
// compute backend chosen when it starts; the rules that keep the settings consistent are core's (settings_rules.h).
// Views read from it and change it only through its slots; every settings change is an undoable command. No widgets
// here, so tests and the benchmark drive it directly.
class Workbench : public QObject {
    Q_OBJECT
public:
    explicit Workbench(QObject* parent = nullptr);
    ~Workbench() override;

    // --- what is open
    bool hasModel() const { return m_model.model != nullptr; }
    const OpenedModel& model() const { return m_model; }
    QString modelPath() const { return m_modelPath; }
    QString modelName() const; // file or folder name, for the title
    const ModelConfig* config() const; // of the model, else of the analysis (a session without weights), else null
    std::int64_t parameterCount() const { return m_parameterCount; }

    const AnalysisPtr& analysis() const { return m_analysis; }
    const std::optional<ConversionOutcome>& conversion() const { return m_conversion; }
    bool conversionMatchesSettings() const; // false once the settings moved after converting
    const std::optional<SanityReport>& sanity() const { return m_sanity; }
    // What the last "Allocate now" did, as the status bar said it (the cost it minimised, the predicted error before
    // and after, saying so when that went up).
    QString lastAllocationReport() const { return m_lastAllocationReport; }
    QString lastExportFolder() const { return m_lastExport; }
    QString lastGgufExport() const { return m_lastGguf; }
    // The current conversion is of the DeepSeek-V3 target (plan.converted is a deepseek_v3 config, `mla` unset).
    bool conversionIsDeepSeek() const { return m_conversion && m_conversion->deepSeek != nullptr; }
    // Why the current conversion cannot be healed (empty when it can, or when there is none).
    QString healUnavailableReason() const;
    // What Export as GGUF writes now: true for the conversion (DeepSeek-V3 target, llama.cpp's deepseek2), false for
    // the opened model as it is.
    bool ggufExportsConversion() const { return conversionIsDeepSeek(); }
    // What a GGUF export wrote, in one line for the status bar: architecture, tensors, type, size, KV values per token,
    // notes and the llama-cli command that runs it.
    static QString ggufReportText(const GgufExportReport& report);

    // Work a session would keep and none holds yet: an analysis, check or settings change since the model or session
    // was opened or the session saved. (Without an analysis there is nothing a session could store.)
    bool hasUnsavedWork() const;

    // --- settings and the live preview
    const ConversionSettings& settings() const { return m_settings.conversion; }
    const CalibrationOptions& calibration() const { return m_settings.calibration; }
    const Settings& snapshot() const { return m_settings; }
    const std::vector<bool>& lockedLayers() const { return m_settings.lockedLayers; }
    QUndoStack* undoStack() const { return m_undo; }

    const ConversionPreview& preview() const { return m_preview; }
    // What the user should know about valid settings before converting (core's conversionWarnings: the cache grows,
    // a layer is rank-deficient); empty when nothing.
    const QStringList& settingsWarnings() const { return m_warnings; }
    bool previewHasErrors() const { return m_analysis != nullptr; } // predicted errors need an analysis
    bool previewIsStale() const { return m_analysis && !m_preview.selectionMatchesAnalysis; }
    // Kept pairs of every layer and KV head under the current settings (empty before an analysis for score-based
    // strategies).
    const std::vector<LayerPairSelection>& selections() const { return m_selections; }
    // The latent width of every unlocked layer (explicit, or the one the target saving gives); 0 when none.
    std::int64_t resolvedLatent() const;
    std::int64_t resolvedRopePairs() const;
    // The DeepSeek-V3 target is chosen: one kv_lora_rank and one shared RoPE head for every layer.
    bool deepSeekTarget() const { return m_settings.conversion.target == ConversionTarget::DeepSeekV3; }
    // Its widths under the current settings (core's deepSeekWidths); unset for the mha2mla target or when the
    // settings cannot be realised (the preview's problem says why).
    const std::optional<DeepSeekWidths>& deepSeekWidths() const { return m_deepSeekWidths; }

    // --- what Analyze and Convert will cost, before they start (pipeline::estimateAnalysis / estimateConversion,
    // scaled from the forward probe made when the model opened); unset without a model or a probe.
    std::optional<pipeline::CostEstimate> analysisEstimate() const;
    std::optional<pipeline::CostEstimate> conversionEstimate() const;
    const std::optional<pipeline::ForwardProbe>& forwardProbe() const { return m_probe; }

    // --- memory view parameters (persisted, not undoable)
    std::int64_t contextLength() const { return m_contextLength; }
    std::int64_t batchSize() const { return m_batch; }
    void setContextLength(std::int64_t n);
    void setBatchSize(std::int64_t n);
    CacheFormat cacheFormat() const { return m_cacheFormat; }
    void setCacheFormat(CacheFormat f);

    QString device() const { return m_device; }
    // Selects the backend of device `id` ("cpu", "cuda:1") for the jobs started from now on; a message when it falls
    // back. A running job keeps the backend it started with.
    void setDevice(const QString& id);
    // The same with a backend already made (tests, benchmarks); null means the CPU.
    void setBackend(std::shared_ptr<const ComputeBackend> backend);
    const std::shared_ptr<const ComputeBackend>& backend() const { return m_backend; }

    // --- jobs
    bool isBusy() const;
    QString busyTitle() const;
    const CheckOptions& sanityOptions() const { return m_sanityOptions; }
    void setSanityOptions(const CheckOptions& o) { m_sanityOptions = o; }
    // Runs the sanity check automatically after each conversion (default on).
    void setAutoSanityCheck(bool on) { m_autoSanity = on; }

    // --- heal (after Convert; docs/healing.md)
    const HealOptions& healOptions() const { return m_healOptions; }
    void setHealOptions(const HealOptions& options) { m_healOptions = options; }
    std::optional<HealStart> healStart() const { return m_healStart; }
    void setHealStart(std::optional<HealStart> start) { m_healStart = start; }
    // The heal of the current conversion (settings, per-layer and model report, the check of the healed model):
    // from a heal run here or from a reopened session.
    const std::optional<SessionHeal>& heal() const { return m_heal; }
    // The healed model of this run (null when the heal came from a session, or none ran): the export writes it.
    const std::optional<ConversionOutcome>& healedConversion() const { return m_healed; }
    bool isHealing() const;

    // --- "compare with a preset" (the preview's bars)
    // The measured allocation of `preset` applied to the current settings (presetSettings), when one was measured for
    // exactly those settings and the current analysis; null otherwise.
    const Allocation* presetAllocation(const std::string& preset) const;
    // What the comparison with `preset` shows now (core's comparePreset with the allocation above); unset without an
    // analysis or for the DeepSeek-V3 target.
    std::optional<PresetComparison> comparison(const std::string& preset) const;

    // Shows an analysis without the weights (a session, the benchmark): the preview works, conversion does not.
    void setAnalysisOnly(const AnalysisPtr& analysis, std::int64_t parameterCount);

public Q_SLOTS:
    void openModel(const QString& path);
    void analyze();
    void convert();
    void runSanityCheck();
    void healConversion();           // heals the current conversion with healOptions()
    void stopHeal(bool keepHealed);  // keep the layers healed so far, or none (the conversion as it was)
    void runHealedSanityCheck();     // the sanity check on the healed model
    // Measures the allocation a conversion with `preset` would make from the current settings (pipeline::allocate),
    // for the comparison only: the settings do not change.
    void measurePresetAllocation(const QString& preset);
    void allocate(); // per-layer pairs and latents for the current budget (measured; locked layers kept)
    // `force`: the user agreed to replace what is there (an earlier export; a file that is not a session).
    void exportTo(const QString& folder, bool force = false);
    // Export as one GGUF file for llama.cpp: the conversion when it is of the DeepSeek-V3 target (deepseek2), else the
    // opened model as it is. `weights`: null keeps the model's type. `overwrite`: the user agreed to replace a file
    // that is not a GGUF this tool wrote (core's output policy, GgufExportOptions::overwrite).
    void exportGgufTo(const QString& file, std::optional<mla::GgmlType> weights, const QString& name, bool overwrite = false);
    // Distils an exported model from the original in PyTorch (pipeline::recover); the request names the folders.
    void recoverExport(const mla::pipeline::RecoveryRequest& request);
    void saveSession(const QString& path, bool force = false);
    void openSession(const QString& path);
    void cancel();

    // Settings changes (undoable). `mergeId` >= 0 merges consecutive changes of one control (a slider drag).
    void changeSettings(const mla::ConversionSettings& settings, const QString& what, int mergeId = -1);
    void changeCalibration(const mla::CalibrationOptions& calibration, const QString& what);
    // The layout converted to (undoable). Switching resets what means something else in the other layout: the RoPE
    // pairs (per KV head vs. the one shared head), per-layer widths and locks; FlashMLA fixes 512 + 64.
    void setTarget(mla::ConversionTarget target, bool flashMla);
    void setGlobalLatent(std::int64_t latent, int mergeId = -1); // unlocked layers follow, locked ones keep theirs
    void setTargetSaving(double saving, int mergeId = -1);       // the latent follows the saving from now on
    void setLayerLatent(int layer, std::int64_t latent, int mergeId = -1); // sets and locks one layer
    void setLayerLocked(int layer, bool locked);
    void applySnapshot(const mla::Settings& snapshot); // used by undo/redo

Q_SIGNALS:
    void modelChanged();
    void analysisChanged();
    void settingsChanged();
    void previewChanged();
    void memoryParametersChanged();
    void conversionChanged();
    void presetAllocationChanged();
    void estimatesChanged(); // the probe arrived (the estimates also follow settingsChanged / analysisChanged)
    void sanityChanged();
    void healStepped(const mla::HealProgress& progress, const QString& start); // live, from the running heal
    void healChanged();                                                          // heal() changed (or was cleared)
    void exported(const QString& folder);
    void ggufExported(const mla::GgufExportReport& report);
    void recovered(const QString& folder, double klBefore, double klAfter);
    void sessionSaved(const QString& path);
    // A session was opened; `modelMissing` is the model it was made from when that is not open (empty when it is).
    void sessionOpened(const QString& path, const QString& modelMissing);

    void jobStarted(const QString& title);
    void jobProgress(double fraction, const QString& stage, double etaSeconds);
    void jobFinished(const QString& title, bool succeeded);
    void busyChanged(bool busy);

    void errorOccurred(const QString& title, const QString& message);
    void statusMessage(const QString& message);

private:
    // Jobs whose results belong to the open document (model and analysis) are cancelled when another one opens, and
    // what they still deliver is dropped; the others (opening, saving, exporting) stand on their own.
    enum class Scope { Document, Own };
    template <typename J>
    J* makeJob(Scope scope);
    // Starts work for the open document: remembers which document the job's result belongs to.
    void forDocument(Job* job);
    // Whether `job`'s delivered result belongs to the document open now.
    bool belongsToDocument(const Job* job) const;
    void replaceDocument(); // a model or a session was opened: cancel and drop the old document's jobs

    void pushSettings(Settings after, const QString& what, int mergeId, bool followLocks = true);
    void recomputePreview();
    void scheduleReselect();
    void startReselect();
    void setModel(const OpenedModel& model, const QString& path);
    void setAnalysis(const AnalysisPtr& analysis);

    OpenedModel m_model;
    QString m_modelPath;
    std::int64_t m_parameterCount = 0;
    AnalysisPtr m_analysis;
    std::optional<ModelConfig> m_analysisOnlyConfig;
    std::optional<ConversionOutcome> m_conversion;
    std::optional<SanityReport> m_sanity;
    std::optional<CheckOutcome> m_conversionCheck; // the check of m_conversion (the export's model card quotes it)
    HealOptions m_healOptions;
    std::optional<HealStart> m_healStart;
    std::optional<SessionHeal> m_heal;
    std::optional<ConversionOutcome> m_healed;      // the healed model of m_conversion
    std::optional<CheckOutcome> m_healedCheck;      // its check
    void clearHeal();
    QString m_lastExport;
    QString m_lastAllocationReport;
    bool m_unsavedResults = false; // an analysis or check arrived since the last open or save
    quint64 m_document = 0; // increases each time another model or session opens

    Settings m_settings;
    ConversionPreview m_preview;
    QStringList m_warnings;
    std::optional<pipeline::ForwardProbe> m_probe;
    std::vector<LayerPairSelection> m_selections;
    // What m_selections was computed from: a latent or saving move keeps the kept pairs, so they are not re-selected
    // (32 layers x 32 KV heads of sorting on a 7B-shaped model, a third of a live-preview frame).
    struct SelectionKey {
        AnalysisPtr analysis; // held, so a new analysis can never reuse its address
        std::int64_t layers = 0;
        std::int64_t kvHeads = 0;
        std::int64_t headDim = 0;
        RopeStrategy strategy = RopeStrategy::TwoNorm;
        std::int64_t ropePairs = 0;
        std::vector<std::int64_t> ropePairsPerLayer;
        std::int64_t uniformStart = 0;
        bool operator==(const SelectionKey&) const = default;
    };
    std::optional<SelectionKey> m_selectionKey;
    void updateSelections(const ModelConfig& config);
    ConversionPreview deepSeekPreview(const ModelConfig& config);
    std::optional<DeepSeekWidths> m_deepSeekWidths;
    QString m_lastGguf;
    std::int64_t m_contextLength = 4096;
    std::int64_t m_batch = 1;
    CacheFormat m_cacheFormat = CacheFormat::BF16;
    QString m_device = QStringLiteral("cpu");
    std::shared_ptr<const ComputeBackend> m_backend = cpuBackendShared();
    CheckOptions m_sanityOptions;
    bool m_autoSanity = true;

    QUndoStack* m_undo = nullptr;
    QTimer m_reselectTimer;
    struct TrackedJob {
        Job* job;
        Scope scope;
    };
    QList<TrackedJob> m_jobs; // every job, in one list: busy state, cancellation and the backend follow it
    ModelLoadJob* m_loadJob = nullptr;
    AnalysisJob* m_analysisJob = nullptr;
    ReselectJob* m_reselectJob = nullptr;
    AllocationJob* m_allocationJob = nullptr;
    AllocationJob* m_presetAllocationJob = nullptr;
    struct MeasuredPresetAllocation {
        std::string preset;
        Settings settings; // presetSettings() it was measured for
        AnalysisPtr analysis;
        Allocation allocation;
    };
    std::optional<MeasuredPresetAllocation> m_presetAllocation;
    ConversionJob* m_conversionJob = nullptr;
    SanityJob* m_sanityJob = nullptr;
    HealJob* m_healJob = nullptr;
    SanityJob* m_healSanityJob = nullptr;
    ExportJob* m_exportJob = nullptr;
    GgufExportJob* m_ggufJob = nullptr;
    RecoveryJob* m_recoveryJob = nullptr;
    SessionJob* m_sessionSaveJob = nullptr;
    SessionJob* m_sessionLoadJob = nullptr;
};

} // namespace mla
