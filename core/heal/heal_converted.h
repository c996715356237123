#pragma once

#include "conversion/model_card.h"
#include "heal/heal_start.h"
#include "heal/healer.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mla {

// The "heal the converted model" action as one Qt-free call (CLI `convert --heal`; the pipeline and the GUI's Heal
// step call the same): heals the given start, or, with several starts (`--heal-start auto`), heals each with
// `probeSteps` steps per layer (0: defaultProbeSteps, the whole budget) and keeps the one with the lower held-out KL.
// CPU only (the healer has no CUDA path yet), so no backend is taken.
struct HealConvertedResult {
    HealResult healed;                       // the chosen start, healed (model + per-layer and model report)
    std::size_t chosen = 0;                  // index into the starts
    std::string start;                       // its name
    std::optional<HealStartChoice> choice;   // with several starts: each start's held-out KL before and after
    HealOptions options;                     // as run
};

HealConvertedResult healConvertedModel(const Model& original, const std::vector<HealStartCandidate>& starts,
                                       const HealData& data, const HealOptions& options, std::int64_t probeSteps = 0,
                                       const JobControl& job = {}, const HealObserver& observer = {});

// The report as JSON (CLI --json, sessions): options, data, per layer held-out loss before/after, steps, kept step,
// time; for the model KL / perplexity / top-1 before and after; the starts compared.
nlohmann::ordered_json healResultJson(const HealConvertedResult& result);

// What the export's model card records about the heal.
HealCardInfo healCardInfo(const HealConvertedResult& result);

// "0.1 x query-weight RMS per layer" or the absolute rate.
std::string healLearningRateText(const HealOptions& options);

} // namespace mla
