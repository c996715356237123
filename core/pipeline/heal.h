#pragma once

#include "heal/heal_converted.h"
#include "heal/heal_data.h"
#include "pipeline/convert.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mla::pipeline {

// Heal (CLI `convert --heal`; the workbench's Heal step): block-wise distillation of a conversion's attention
// (core/heal, docs/healing.md).
struct HealRequest {
    HealOptions options;
    std::optional<HealStart> start; // not given: heal the conversion as asked
    std::int64_t probeSteps = 0;    // `auto`: steps per layer of each start's trial heal (0: defaultProbeSteps)
};

// The healing data: sampled from the original, or the request's text / ids. Made before any conversion work, so a
// bad --heal-ids / --heal-text file fails first.
HealData prepareHealing(const OpenedModel& model, const HealRequest& request, const ExecutionContext& context);

// Sees every heal step (HealProgress) with the name of the start being healed: empty when there is one start.
using HealStartObserver = std::function<void(const HealProgress&, const std::string& start)>;

struct HealedConversion {
    ConversionOutcome conversion;   // the start kept: its plan and reports; `converted` is the healed model and
                                    // `heal` what the model card says about the heal
    HealConvertedResult heal;
    std::vector<std::string> notes; // e.g. why `auto` had no second start to compare
};

// Heals a conversion made in memory. With `auto` or `paper` and an allocated conversion, the `paper` preset at the
// same KV budget is converted too (with the same analysis) and healed as a start; `auto` keeps the start with the
// lower held-out KL. The healer runs on the CPU whatever the context's backend.
// Cancelled: with request.options.onCancel == KeepHealedLayers and at least one layer finished, returns the model with
// the layers healed so far (heal.healed.report.cancelled set, a note saying how many); otherwise throws Cancelled.
// With several starts, a cancel while the starts are compared always throws.
HealedConversion healConversion(const OpenedModel& model, const ConversionOutcome& conversion, const HealRequest& request,
                                const HealData& data, const ExecutionContext& context, const HealStartObserver& observer = {});

// Convert, heal and write (CLI `convert --heal`): the settings and the destination are checked and the healing data
// prepared before any work; the healed model is written as exportConversion writes it (model card with the heal);
// with `check`, the folder is reloaded and measured against the original.
struct HealedFolderOutcome {
    FolderOutcome folder;
    HealConvertedResult heal;
    std::vector<std::string> notes;
};
HealedFolderOutcome convertHealToFolder(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                        const HealRequest& heal, const ExportRequest& request,
                                        const std::optional<CheckOptions>& check, const ExecutionContext& context,
                                        const HealStartObserver& observer = {});

} // namespace mla::pipeline
