#include "pipeline/convert.h"

#include "analysis/original_trajectory.h"
#include "conversion/model_card.h"
#include "conversion/presets.h"
#include "engine/transformer.h"
#include "conversion/settings_validation.h"
#include "model/model_loader.h"
#include "pipeline/allocate.h"
#include "settings/settings_rules.h"
#include "util/error.h"

#include <chrono>

namespace mla::pipeline {
namespace {

DType attentionDtype(const Model& model)
{
    return model.layers.empty() || model.layers[0].q.empty() ? DType::F32 : model.layers[0].q.dtype();
}

CalibrationSet calibrationOf(const AnalysisPtr& analysis)
{
    CalibrationSet calibration;
    if (analysis) {
        calibration.sequences = analysis->calibrationIds;
        calibration.description = analysis->calibrationDescription;
    }
    return calibration;
}

// Everything before the weights are touched: the calibration when needed, the allocation when pending, the plan.
// Returns the share of the progress used. The original model's layer inputs are kept in `kept` (up to its cap) for
// the passes that follow: by the calibration made here, or by the allocation when the analysis was made earlier.
double plan(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings, const ExecutionContext& context,
            ConversionOutcome& out, OriginalTrajectory& kept)
{
    const ModelConfig& c = model.model->config;
    double begin = 0.0;
    out.requested = settings;
    if (!analysis && conversionNeedsAnalysis(settings.conversion)) {
        // Only the allocation and the sequential conversion pass over the calibration again.
        const bool passesAgain = allocationPending(settings.conversion) || settingsNeedCalibrationPass(settings.conversion);
        analysis = calibrateForConversion(model, settings, context.slice(0.0, 0.2), passesAgain ? &kept : nullptr);
        begin = 0.2;
    } else if (analysis) {
        kept.start(analysis->calibrationIds, c.layers); // the allocation keeps what it computes for the conversion
    }
    if (analysis && !analysisMatchesModel(*analysis, *model.model))
        throw Error(model.model->source, "is not the model the analysis was made from; analyse it again");
    out.analysis = analysis;
    Settings s = settings;
    if (allocationPending(s.conversion)) {
        if (!analysis)
            throw Error("internal: an allocation needs the analysis's scores and calibration");
        out.allocationBudget = allocationBudget(s, c);
        out.allocation = allocate(*model.model, *analysis, s, context.slice(begin, begin + 0.3), &kept);
        s = withAllocation(s, *out.allocation);
        begin += 0.3;
    }
    out.plan = planConversion(c, s.conversion, selectPairs(c, s.conversion, analysis.get()));
    return begin;
}

// --decomposition randomized: the first layer's latent decomposed both ways, so that what the randomized path costs in
// error and saves in time is known (and shown) before the other layers use it. Returns where the conversion's own
// progress starts: the check costs about two layers' decompositions.
double checkRandomizedDecomposition(const Model& original, ConversionOutcome& out, const ExecutionContext& context, double begin)
{
    const ConversionSettings& s = out.plan.settings;
    if (s.decomposition != DecompositionMethod::Randomized || !out.plan.converted.mla || original.layers.empty())
        return begin;
    const MlaLayerConfig& target = out.plan.converted.mla->layers.front();
    if (target.method == LatentMethod::None)
        return begin;
    const MatrixXdRM* covariance = nullptr;
    if (s.activationAware && out.analysis && !out.analysis->layers.empty() && out.analysis->layers.front().inputCovariance.size() > 0)
        covariance = &out.analysis->layers.front().inputCovariance;
    const double end = begin + (1.0 - begin) * 2.0 / (static_cast<double>(original.layers.size()) + 2.0);
    out.decompositionCheck = checkDecomposition(context.backend(), original.config, 0, original.layers.front(), target, s, covariance,
                                                context.job().slice(begin, end));
    return end;
}

ModelCardInfo cardOf(const Model& original, const ConversionOutcome& conversion, DType dtype, std::uint64_t shardBytes)
{
    ModelCardInfo card;
    card.sourceModel = original.source.string();
    card.sourceFormat = original.format;
    card.original = original.config;
    card.converted = conversion.plan.converted;
    card.settings = conversion.plan.settings;
    if (conversion.analysis) {
        card.calibration = conversion.analysis->calibrationDescription;
        card.calibrationTokens = conversion.analysis->calibrationTokens;
    }
    card.dtype = dtype;
    card.shardBytes = shardBytes;
    card.heal = conversion.heal;
    card.decompositionCheck = conversion.decompositionCheck;
    if (const auto& d = conversion.deepSeek) {
        card.calibration = d->calibrationDescription;
        card.calibrationTokens = d->calibrationTokens;
        card.widthsOrigin = d->widths.origin;
        card.deepSeekLayers = d->layers;
    }
    return card;
}

// Whether the export carries a tokenizer the serving engines read (the deepseek-v3 card says what to do otherwise).
bool hasHuggingFaceTokenizer(const ExportOptions& options)
{
    for (const auto& f : options.extraFiles) {
        const std::string name = f.filename().string();
        if (name == "tokenizer.json" || name == "tokenizer.model")
            return true;
    }
    return false;
}

// --target deepseek-v3: calibrate (or take the analysis's calibration), then convertToDeepSeek, which chooses the
// widths and the shared RoPE head and fits every layer in order on calibration data. The layout has one width for
// every layer, so there is no per-layer allocation step; `allocate` (the best preset) measures the rope / latent split.
ConversionOutcome convertDeepSeek(const OpenedModel& model, const AnalysisPtr& analysis, const Settings& settings,
                                  const ExecutionContext& context)
{
    const Model& original = *model.model;
    if (analysis && !analysisMatchesModel(*analysis, original))
        throw Error(original.source, "is not the model the analysis was made from; analyse it again");
    CalibrationSet calibration;
    double begin = 0.0;
    if (analysis && !analysis->calibrationIds.empty()) {
        calibration = calibrationOf(analysis);
    } else {
        calibration = prepareCalibration(context.backend(), Transformer(original), model.tokenizer.get(), settings.calibration,
                                         context.job().slice(0.0, 0.1));
        begin = 0.1;
    }
    ConversionOutcome out;
    out.requested = settings;
    out.analysis = analysis;
    DeepSeekConversion converted = convertToDeepSeek(context.backend(), original, settings.conversion, calibration, context.job().slice(begin, 1.0));
    converted.calibrationDescription = calibration.description;
    out.plan.original = original.config;
    out.plan.converted = converted.model.config;
    out.plan.settings = settings.conversion;
    out.converted = std::make_shared<const Model>(std::move(converted.model));
    out.deepSeek = std::make_shared<const DeepSeekDetails>(static_cast<DeepSeekDetails&&>(converted));
    return out;
}

// Writes a deepseek-v3 conversion made in memory: the converted tensors, config.json for DeepseekV3ForCausalLM.
ExportReport writeDeepSeek(const Model& original, const Model& converted, const ExportOptions& options, const JobControl& job)
{
    return writeModelWith(original, converted.config, options,
                          [&](const PlannedTensor& p) { return modelTensor(converted, p.role, p.layer); }, job);
}

ExportOptions exportOptionsFor(const OpenedModel& model, const ExportRequest& request, std::vector<std::string>& notes)
{
    ExportOptions options;
    options.folder = request.folder;
    options.dtype = request.dtype;
    options.shardBytes = request.shardBytes;
    options.pipelined = request.pipelined;
    options.extraFiles = companionFiles(*model.model, &notes);
    options.output = outputFor(model, request);
    return options;
}

std::uint64_t trajectoryCap(const Model& model)
{
    return OriginalTrajectory::defaultCap(static_cast<std::uint64_t>(model.weightBytes()));
}

double secondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

OutputOptions outputFor(const OpenedModel& model, const ExportRequest& request)
{
    OutputOptions output = request.output;
    for (auto& f : inputFiles(model))
        output.inputs.push_back(std::move(f));
    return output;
}

void checkWrittenExport(const OpenedModel& model, const CheckOptions& options, ExportOutcome& written, const ExecutionContext& context)
{
    const Model exported = loadModel(written.folder);
    written.check = pipeline::check(model, exported, options, context);
    written.card.metrics = written.check->report;
    written.card.metricsDescription = written.check->description;
    written.card.metricsOnWrittenWeights = true;
    writeModelCard(written.folder, written.card);
}

ConversionOutcome convertInMemory(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                  const ExecutionContext& context)
{
    const auto started = std::chrono::steady_clock::now();
    validateConversionSettings(model.model->config, settings.conversion);
    if (settings.conversion.target == ConversionTarget::DeepSeekV3) {
        ConversionOutcome out = convertDeepSeek(model, std::move(analysis), settings, context);
        out.seconds = secondsSince(started);
        return out;
    }
    ConversionOutcome out;
    OriginalTrajectory kept(trajectoryCap(*model.model));
    const double planned = plan(model, std::move(analysis), settings, context, out, kept);
    const double begin = checkRandomizedDecomposition(*model.model, out, context, planned);
    const ExecutionContext convert = context.slice(begin, 1.0);
    if (settingsNeedCalibrationPass(out.plan.settings)) {
        out.converted = std::make_shared<const Model>(
            convertSequentially(convert.backend(), *model.model, out.plan, calibrationOf(out.analysis), convert.job(), &out.fits, &kept));
    } else {
        out.converted = std::make_shared<const Model>(convertModel(convert.backend(), *model.model, out.plan, {},
                                                                   attentionDtype(*model.model), convert.job(), &out.reports));
    }
    out.seconds = secondsSince(started);
    return out;
}

FolderOutcome convertToFolder(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings, const ExportRequest& request,
                              const std::optional<CheckOptions>& check, const ExecutionContext& context)
{
    const auto started = std::chrono::steady_clock::now();
    const Model& original = *model.model;
    // Refused here, before any calibration or conversion, when the settings are bad or the folder may not be written.
    validateConversionSettings(original.config, settings.conversion);
    requireOutputFolder(request.folder, outputFor(model, request));
    FolderOutcome out;
    ConversionOutcome& conversion = out.conversion;
    if (settings.conversion.target == ConversionTarget::DeepSeekV3) {
        // The whole model is fitted in order on calibration data (float32 attention in memory), then written.
        conversion = convertDeepSeek(model, std::move(analysis), settings, context.slice(0.0, 0.9));
        ExportOptions options = exportOptionsFor(model, request, out.written.notes);
        out.written.card = cardOf(original, conversion, request.dtype.value_or(attentionDtype(original)), request.shardBytes);
        out.written.card.hasHuggingFaceTokenizer = hasHuggingFaceTokenizer(options);
        options.generatedFiles.emplace_back("README.md", modelCardMarkdown(out.written.card));
        out.written.report = writeDeepSeek(original, *conversion.converted, options, context.job().slice(0.9, 1.0));
        out.written.folder = request.folder;
        if (check)
            checkWrittenExport(model, *check, out.written, context);
        conversion.converted.reset(); // as for the mha2mla target: the folder holds it
        conversion.seconds = secondsSince(started);
        return out;
    }
    OriginalTrajectory kept(trajectoryCap(original));
    const double planned = plan(model, std::move(analysis), settings, context, conversion, kept);
    const double begin = checkRandomizedDecomposition(original, conversion, context, planned);

    ExportOptions options = exportOptionsFor(model, request, out.written.notes);
    out.written.card = cardOf(original, conversion, request.dtype.value_or(attentionDtype(original)), request.shardBytes);
    options.generatedFiles.emplace_back("README.md", modelCardMarkdown(out.written.card));
    const ExecutionContext write = context.slice(begin, 1.0);
    if (settingsNeedCalibrationPass(conversion.plan.settings))
        out.written.report = exportSequentially(write.backend(), original, conversion.plan, calibrationOf(conversion.analysis), options,
                                                write.job(), &conversion.fits, &kept);
    else
        out.written.report = exportConvertedModel(write.backend(), original, conversion.plan, options, {}, write.job());
    conversion.reports = out.written.report.layers;
    out.written.folder = request.folder;
    if (check)
        checkWrittenExport(model, *check, out.written, context);
    conversion.seconds = secondsSince(started);
    return out;
}

ExportOutcome exportConversion(const OpenedModel& original, const ConversionOutcome& conversion, const ExportRequest& request,
                               const std::optional<CheckOutcome>& measured, const ExecutionContext& context)
{
    if (!conversion.converted)
        throw Error("internal: nothing converted in memory to export");
    const Model& model = *original.model;
    ExportOutcome out;
    ExportOptions options = exportOptionsFor(original, request, out.notes);
    options.dtype = request.dtype.value_or(attentionDtype(model));
    requireOutputFolder(request.folder, options.output);
    out.card = cardOf(model, conversion, *options.dtype, request.shardBytes);
    if (measured) {
        out.card.metrics = measured->report;
        out.card.metricsDescription = measured->description;
        out.card.metricsOnWrittenWeights = false;
    }
    out.card.hasHuggingFaceTokenizer = hasHuggingFaceTokenizer(options);
    options.generatedFiles.emplace_back("README.md", modelCardMarkdown(out.card));
    out.report = conversion.deepSeek ? writeDeepSeek(model, *conversion.converted, options, context.job())
                                     : exportModel(*conversion.converted, options, context.job());
    out.folder = request.folder;
    return out;
}

} // namespace mla::pipeline
