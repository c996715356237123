#pragma once

#include "heal/healer.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mla {

// Which converted model a heal starts from (CLI --heal-start). The training-free allocation optimises the error
// before healing; after healing a layer given a very narrow latent recovers least, so the uniform `paper` split can
// end up better (docs/healing.md). `auto` heals each start and keeps the one with the lower held-out KL.
enum class HealStart { Auto, Paper, Allocated };
std::string_view healStartName(HealStart start);               // auto, paper, allocated
bool parseHealStart(std::string_view name, HealStart& out);

// One converted model to consider as a start.
struct HealStartCandidate {
    std::string name;            // e.g. "paper", "allocated"
    const Model* model = nullptr;
};

struct HealStartProbe {
    std::string name;
    double klUnhealed = 0.0;     // held-out KL of the start as converted
    double klProbe = 0.0;        // after the short heal
    double seconds = 0.0;
};

struct HealStartChoice {
    std::size_t chosen = 0;
    std::int64_t probeSteps = 0;
    std::vector<HealStartProbe> probes; // one per candidate, in order
};

// Heals every candidate with `probeSteps` steps per layer (the other options as given) on the same data and picks
// the one with the lowest held-out KL after it (ties: the earlier candidate). Cancelling throws Cancelled.
// `probeResults`, when given, receives each probe's heal; `observer` sees every probe's progress (HealProgress::start).
HealStartChoice chooseHealStart(const Model& original, const std::vector<HealStartCandidate>& candidates, const HealData& data,
                                const HealOptions& options, std::int64_t probeSteps, const JobControl& job = {},
                                std::vector<HealResult>* probeResults = nullptr, const HealObserver& observer = {});

// The probe budget `auto` uses by default: the whole budget, so that every start is healed fully and the better one
// kept (twice the cost of one heal). A shorter probe favours the start that is better before healing: measured in
// docs/healing.md, a quarter of the steps picked the worse start where the two cross.
std::int64_t defaultProbeSteps(std::int64_t steps);

struct HealFromStart {
    HealStartChoice choice;
    HealResult result;           // the chosen start healed with options.steps
};

// chooseHealStart, then the full heal of the chosen candidate (the probe itself when probeSteps >= options.steps).
HealFromStart healFromBestStart(const Model& original, const std::vector<HealStartCandidate>& candidates, const HealData& data,
                                const HealOptions& options, std::int64_t probeSteps, const JobControl& job = {},
                                const HealObserver& observer = {});

} // namespace mla
