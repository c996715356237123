#include "heal/heal_start.h"

#include "util/error.h"

#include <algorithm>
#include <chrono>

namespace mla {

std::string_view healStartName(HealStart s)
{
    switch (s) {
    case HealStart::Auto: return "auto";
    case HealStart::Paper: return "paper";
    case HealStart::Allocated: return "allocated";
    }
    return "auto";
}

bool parseHealStart(std::string_view name, HealStart& out)
{
    for (HealStart s : {HealStart::Auto, HealStart::Paper, HealStart::Allocated}) {
        if (name == healStartName(s)) {
            out = s;
            return true;
        }
    }
    return false;
}

std::int64_t defaultProbeSteps(std::int64_t steps)
{
    return steps;
}

HealStartChoice chooseHealStart(const Model& original, const std::vector<HealStartCandidate>& candidates, const HealData& data,
                                const HealOptions& options, std::int64_t probeSteps, const JobControl& job,
                                std::vector<HealResult>* probeResults, const HealObserver& observer)
{
    if (candidates.empty())
        throw Error("heal: no start to choose from");
    for (const auto& c : candidates)
        if (!c.model)
            throw Error("internal: heal start '" + c.name + "' has no model");
    HealOptions probe = options;
    probe.steps = probeSteps;
    probe.measureModel = true;
    probe.onCancel = HealCancelPolicy::DiscardAll;
    validateHealOptions(probe);

    HealStartChoice choice;
    choice.probeSteps = probeSteps;
    const double share = 1.0 / static_cast<double>(candidates.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const auto started = std::chrono::steady_clock::now();
        const JobControl slice = job.slice(share * static_cast<double>(i), share * static_cast<double>(i + 1));
        HealObserver tagged;
        if (observer)
            tagged = [&observer, i](const HealProgress& p) {
                HealProgress q = p;
                q.start = i;
                observer(q);
            };
        HealResult r = healModel(original, *candidates[i].model, data, probe, slice, tagged);
        if (r.report.cancelled)
            throw Cancelled();
        HealStartProbe p;
        p.name = candidates[i].name;
        p.klUnhealed = r.report.before->kl;
        p.klProbe = r.report.after->kl;
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (choice.probes.empty() || p.klProbe < choice.probes[choice.chosen].klProbe)
            choice.chosen = i;
        choice.probes.push_back(p);
        if (probeResults)
            probeResults->push_back(std::move(r));
    }
    return choice;
}

HealFromStart healFromBestStart(const Model& original, const std::vector<HealStartCandidate>& candidates, const HealData& data,
                                const HealOptions& options, std::int64_t probeSteps, const JobControl& job,
                                const HealObserver& observer)
{
    validateHealOptions(options);
    probeSteps = std::min(probeSteps, options.steps);
    const bool probeIsFinal = probeSteps == options.steps;
    std::vector<HealResult> probes;
    HealFromStart out;
    out.choice = chooseHealStart(original, candidates, data, options, probeSteps, job.slice(0.0, probeIsFinal ? 1.0 : 0.3),
                                 probeIsFinal ? &probes : nullptr, probeIsFinal ? observer : HealObserver{});
    if (probeIsFinal) {
        out.result = std::move(probes[out.choice.chosen]);
        return out;
    }
    const std::size_t chosen = out.choice.chosen;
    HealObserver tagged;
    if (observer)
        tagged = [&observer, chosen](const HealProgress& p) {
            HealProgress q = p;
            q.start = chosen;
            observer(q);
        };
    out.result = healModel(original, *candidates[chosen].model, data, options, job.slice(0.3, 1.0), tagged);
    return out;
}

} // namespace mla
