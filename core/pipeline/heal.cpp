#include "pipeline/heal.h"

#include "conversion/presets.h"
#include "conversion/settings_validation.h"
#include "engine/transformer.h"
#include "util/error.h"

#include <cmath>

namespace mla::pipeline {
namespace {

// The `paper` start: the paper preset at the KV budget the allocated conversion was asked for.
Settings paperSettingsFor(const Model& model, const Settings& asked, std::vector<std::string>& notes)
{
    Settings paper = asked;
    paper.conversion = ConversionSettings{};
    applyPreset("paper", paper.conversion);
    paper.lockedLayers.clear();
    const ConversionSettings& a = asked.conversion;
    paper.conversion.targetSaving = a.kvBudget > 0
                                        ? 1.0 - static_cast<double>(a.kvBudget) / static_cast<double>(model.config.kvElementsPerToken())
                                        : a.targetSaving;
    try {
        validateConversionSettings(model.config, paper.conversion);
    } catch (const Error& e) {
        // The default head_dim/16 pairs may leave no room for a latent at this saving (docs/results.md).
        notes.push_back(std::string("paper start: ") + e.what() + "; using 0 RoPE pairs");
        paper.conversion.ropePairs = 0;
        validateConversionSettings(model.config, paper.conversion);
    }
    return paper;
}

} // namespace

HealData prepareHealing(const OpenedModel& model, const HealRequest& request, const ExecutionContext& context)
{
    return prepareHealData(Transformer(*model.model), model.tokenizer.get(), request.options, context.job());
}

HealedConversion healConversion(const OpenedModel& model, const ConversionOutcome& conversion, const HealRequest& request,
                                const HealData& data, const ExecutionContext& context, const HealStartObserver& observer)
{
    if (!conversion.converted)
        throw Error("internal: nothing converted in memory to heal");
    if (conversion.deepSeek)
        throw Error("healing works on the mha2mla layout only; the deepseek-v3 target cannot be healed yet");
    HealedConversion out;
    const HealStart start = request.start.value_or(HealStart::Allocated);
    const bool allocated = conversion.allocation.has_value();
    std::optional<ConversionOutcome> paper;
    double begin = 0.0;
    if (allocated && start != HealStart::Allocated) {
        const Settings settings = paperSettingsFor(*model.model, conversion.requested, out.notes);
        paper = convertInMemory(model, conversion.analysis, settings, context.slice(0.0, 0.1));
        begin = 0.1;
    } else if (start == HealStart::Auto) {
        out.notes.push_back("--heal-start auto: the conversion has one latent width for every layer (not allocated), so there "
                            "is no other start to compare; healing it as converted");
    }
    std::vector<HealStartCandidate> starts;
    std::vector<const ConversionOutcome*> outcomes;
    if (paper) {
        starts.push_back({"paper", paper->converted.get()});
        outcomes.push_back(&*paper);
    }
    if (start != HealStart::Paper || !allocated) {
        const std::string& preset = conversion.plan.settings.preset;
        starts.push_back({allocated ? "allocated" : (preset.empty() ? "converted" : preset), conversion.converted.get()});
        outcomes.push_back(&conversion);
    }
    HealObserver named;
    if (observer)
        named = [&observer, &starts](const HealProgress& p) {
            observer(p, starts.size() > 1 && p.start < starts.size() ? starts[p.start].name : std::string());
        };
    out.heal = healConvertedModel(*model.model, starts, data, request.options, request.probeSteps, context.job().slice(begin, 1.0),
                                  named);
    const HealReport& report = out.heal.healed.report;
    // A cancel keeps the finished layers only when asked to and when there are some; otherwise nothing is left.
    if (report.cancelled && (request.options.onCancel == HealCancelPolicy::DiscardAll || report.layersHealed == 0))
        throw Cancelled();
    if (report.cancelled)
        out.notes.push_back("cancelled: " + std::to_string(report.layersHealed) + " of "
                            + std::to_string(model.model->config.layers) + " layers healed, the others as converted");
    out.conversion = *outcomes[out.heal.chosen];
    out.conversion.converted = std::make_shared<const Model>(out.heal.healed.model);
    out.conversion.heal = healCardInfo(out.heal);
    return out;
}

HealedFolderOutcome convertHealToFolder(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                        const HealRequest& heal, const ExportRequest& request,
                                        const std::optional<CheckOptions>& check, const ExecutionContext& context,
                                        const HealStartObserver& observer)
{
    const Model& original = *model.model;
    // Refused here, before any work: bad settings, a destination that may not be written, bad healing data.
    validateConversionSettings(original.config, settings.conversion);
    if (settings.conversion.target == ConversionTarget::DeepSeekV3)
        throw Error("--heal works on the mha2mla layout only; the deepseek-v3 target cannot be healed yet");
    requireOutputFolder(request.folder, outputFor(model, request));
    const HealData data = prepareHealing(model, heal, context.slice(0.0, 0.05));

    const ConversionOutcome converted = convertInMemory(model, std::move(analysis), settings, context.slice(0.05, 0.4));
    HealedConversion healed = healConversion(model, converted, heal, data, context.slice(0.4, 0.95), observer);
    if (healed.heal.healed.report.cancelled)
        throw Cancelled(); // a folder is written only for a finished heal
    HealedFolderOutcome out;
    out.heal = std::move(healed.heal);
    out.notes = std::move(healed.notes);
    out.folder.conversion = std::move(healed.conversion);
    out.folder.written = exportConversion(model, out.folder.conversion, request, std::nullopt, context.slice(0.95, 1.0));
    if (check)
        checkWrittenExport(model, *check, out.folder.written, context);
    out.folder.conversion.seconds += out.heal.healed.report.seconds;
    return out;
}

} // namespace mla::pipeline
