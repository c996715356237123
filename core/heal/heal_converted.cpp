#include "heal/heal_converted.h"

#include "util/error.h"

#include <sstream>

namespace mla {

HealConvertedResult healConvertedModel(const Model& original, const std::vector<HealStartCandidate>& starts,
                                       const HealData& data, const HealOptions& options, std::int64_t probeSteps,
                                       const JobControl& job, const HealObserver& observer)
{
    if (starts.empty())
        throw Error("heal: no converted model to heal");
    validateHealOptions(options);
    HealConvertedResult out;
    out.options = options;
    if (starts.size() == 1) {
        if (!starts[0].model)
            throw Error("internal: heal start '" + starts[0].name + "' has no model");
        out.healed = healModel(original, *starts[0].model, data, options, job, observer);
        out.start = starts[0].name;
        return out;
    }
    HealFromStart h = healFromBestStart(original, starts, data, options, probeSteps > 0 ? probeSteps : defaultProbeSteps(options.steps),
                                        job, observer);
    out.chosen = h.choice.chosen;
    out.start = starts[h.choice.chosen].name;
    out.choice = std::move(h.choice);
    out.healed = std::move(h.result);
    return out;
}

std::string healLearningRateText(const HealOptions& options)
{
    std::ostringstream s;
    if (options.learningRate)
        s << *options.learningRate;
    else
        s << options.relativeLearningRate << " x query-weight RMS per layer";
    return s.str();
}

namespace {

nlohmann::ordered_json qualityJson(const std::optional<HealQuality>& q)
{
    if (!q)
        return nullptr;
    return {{"kl", q->kl}, {"ppl", q->perplexity}, {"ppl_original", q->originalPerplexity}, {"top1", q->top1Agreement},
            {"positions", q->positions}};
}

} // namespace

nlohmann::ordered_json healResultJson(const HealConvertedResult& r)
{
    const HealReport& rep = r.healed.report;
    const HealOptions& o = r.options;
    nlohmann::ordered_json j;
    j["start"] = r.start;
    j["steps"] = o.steps;
    j["learning_rate"] = o.learningRate ? nlohmann::ordered_json(*o.learningRate) : nlohmann::ordered_json(nullptr);
    j["relative_learning_rate"] = o.learningRate ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.relativeLearningRate);
    j["seed"] = o.seed;
    j["tokens"] = o.data.tokens;
    j["data"] = {{"description", rep.dataDescription}, {"train_tokens", rep.trainTokens}, {"held_out_tokens", rep.heldOutTokens}};
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& l : rep.layers)
        layers.push_back({{"layer", l.layer}, {"held_out_loss_before", l.heldOutBefore}, {"held_out_loss_after", l.heldOutAfter},
                          {"learning_rate", l.learningRate}, {"steps", l.steps}, {"best_step", l.bestStep},
                          {"stopped_early", l.stoppedEarly}, {"diverged", l.diverged}, {"seconds", l.seconds}});
    j["layers"] = layers;
    j["before"] = qualityJson(rep.before);
    j["after"] = qualityJson(rep.after);
    j["layers_healed"] = rep.layersHealed;
    j["cancelled"] = rep.cancelled;
    j["seconds"] = rep.seconds;
    if (r.choice) {
        nlohmann::ordered_json starts = nlohmann::ordered_json::array();
        for (const auto& p : r.choice->probes)
            starts.push_back({{"name", p.name}, {"held_out_kl_unhealed", p.klUnhealed}, {"held_out_kl_healed", p.klProbe},
                              {"seconds", p.seconds}});
        j["auto"] = {{"probe_steps", r.choice->probeSteps}, {"chosen", r.start}, {"starts", starts}};
    }
    return j;
}

HealCardInfo healCardInfo(const HealConvertedResult& r)
{
    const HealReport& rep = r.healed.report;
    HealCardInfo c;
    c.start = r.start;
    if (r.choice) {
        std::string names;
        for (const auto& p : r.choice->probes)
            names += (names.empty() ? "" : ", ") + p.name;
        c.startChoice = "auto: the lower held-out KL of " + names + " after " + std::to_string(r.choice->probeSteps) + " steps";
    }
    c.steps = r.options.steps;
    c.learningRate = healLearningRateText(r.options);
    c.trainTokens = rep.trainTokens;
    c.heldOutTokens = rep.heldOutTokens;
    c.data = rep.dataDescription;
    c.seed = r.options.seed;
    c.layersHealed = rep.layersHealed;
    if (rep.before)
        c.klBefore = rep.before->kl;
    if (rep.after)
        c.klAfter = rep.after->kl;
    c.seconds = rep.seconds;
    return c;
}

} // namespace mla
