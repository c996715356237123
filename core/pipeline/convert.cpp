#include "pipeline/convert.h"

#include "conversion/model_card.h"
#include "conversion/presets.h"
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
// Returns the share of the progress used.
double plan(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings, const ExecutionContext& context,
            ConversionOutcome& out)
{
    const ModelConfig& c = model.model->config;
    double begin = 0.0;
    out.requested = settings;
    if (!analysis && conversionNeedsAnalysis(settings.conversion)) {
        analysis = calibrateForConversion(model, settings, context.slice(0.0, 0.2));
        begin = 0.2;
    }
    if (analysis && !analysisMatchesModel(*analysis, *model.model))
        throw Error(model.model->source, "is not the model the analysis was made from; analyse it again");
    out.analysis = analysis;
    Settings s = settings;
    if (allocationPending(s.conversion)) {
        if (!analysis)
            throw Error("internal: an allocation needs the analysis's scores and calibration");
        out.allocationBudget = allocationBudget(s, c);
        out.allocation = allocate(*model.model, *analysis, s, context.slice(begin, begin + 0.3));
        s = withAllocation(s, *out.allocation);
        begin += 0.3;
    }
    out.plan = planConversion(c, s.conversion, selectPairs(c, s.conversion, analysis.get()));
    return begin;
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
    return card;
}

// The output policy for an export of `model`: the request's, with every file the model was read from as an input.
OutputOptions outputFor(const OpenedModel& model, const ExportRequest& request)
{
    OutputOptions output = request.output;
    for (auto& f : inputFiles(model))
        output.inputs.push_back(std::move(f));
    return output;
}

ExportOptions exportOptionsFor(const OpenedModel& model, const ExportRequest& request, std::vector<std::string>& notes)
{
    ExportOptions options;
    options.folder = request.folder;
    options.dtype = request.dtype;
    options.shardBytes = request.shardBytes;
    options.extraFiles = companionFiles(*model.model, &notes);
    options.output = outputFor(model, request);
    return options;
}

double secondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

ConversionOutcome convertInMemory(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                  const ExecutionContext& context)
{
    const auto started = std::chrono::steady_clock::now();
    validateConversionSettings(model.model->config, settings.conversion);
    ConversionOutcome out;
    const double begin = plan(model, std::move(analysis), settings, context, out);
    const ExecutionContext convert = context.slice(begin, 1.0);
    if (settingsNeedCalibrationPass(out.plan.settings)) {
        out.converted = std::make_shared<const Model>(
            convertSequentially(convert.backend(), *model.model, out.plan, calibrationOf(out.analysis), convert.job(), &out.fits));
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
    const double begin = plan(model, std::move(analysis), settings, context, conversion);

    ExportOptions options = exportOptionsFor(model, request, out.written.notes);
    out.written.card = cardOf(original, conversion, request.dtype.value_or(attentionDtype(original)), request.shardBytes);
    options.generatedFiles.emplace_back("README.md", modelCardMarkdown(out.written.card));
    const ExecutionContext write = context.slice(begin, 1.0);
    if (settingsNeedCalibrationPass(conversion.plan.settings))
        out.written.report = exportSequentially(write.backend(), original, conversion.plan, calibrationOf(conversion.analysis), options,
                                                write.job(), &conversion.fits);
    else
        out.written.report = exportConvertedModel(write.backend(), original, conversion.plan, options, {}, write.job());
    conversion.reports = out.written.report.layers;
    out.written.folder = request.folder;
    if (check) {
        // The weights exactly as written (dtype rounding included), then the card with the numbers, atomically.
        const Model exported = loadModel(request.folder);
        out.written.check = pipeline::check(model, exported, *check, context);
        out.written.card.metrics = out.written.check->report;
        out.written.card.metricsDescription = out.written.check->description;
        writeModelCard(request.folder, out.written.card);
    }
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
    options.generatedFiles.emplace_back("README.md", modelCardMarkdown(out.card));
    out.report = exportModel(*conversion.converted, options, context.job());
    out.folder = request.folder;
    return out;
}

} // namespace mla::pipeline
