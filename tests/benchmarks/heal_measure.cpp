// Measures healing on real models for docs/results.md (driven by tests/tools/heal_results.py): loads the original
// and converted starts written by the CLI, heals each start with the default data (sequences sampled from the
// original) at each step budget, and evaluates every model against the original on a separate set of token ids.
// Also records which start `auto` (core/heal/heal_start.h) picks at each budget. Prints one JSON object.
//
// Usage: heal_measure --original PATH --start NAME=PATH [--start ...] --eval IDS [--steps 200,1000]
//                     [--probe-steps N] [--lr X | --rel-lr X] [--tokens N] [--seq-len N] [--batch N] [--seed S] [--evaluate-every N] [--patience N] [--trace]
#include "backend/compute_backend.h"
#include "engine/evaluation.h"
#include "heal/heal_start.h"
#include "model/model_loader.h"

#include <nlohmann/json.hpp>
#include <omp.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

using namespace mla;

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds of this process, all threads: on a shared machine the wall time also counts other jobs.
double cpuSeconds()
{
    return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

nlohmann::ordered_json evaluate(const Model& original, const Model& model, const TokenSequences& ids)
{
    const HealQuality q = measureHealQuality(original, model, ids);
    return {{"kl", q.kl}, {"ppl", q.perplexity}, {"original_ppl", q.originalPerplexity}, {"top1", q.top1Agreement},
            {"positions", q.positions}};
}

std::vector<std::int64_t> parseList(const std::string& s)
{
    std::vector<std::int64_t> out;
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t j = s.find(',', i);
        out.push_back(std::stoll(s.substr(i, j == std::string::npos ? std::string::npos : j - i)));
        if (j == std::string::npos)
            break;
        i = j + 1;
    }
    return out;
}

int usage()
{
    std::cerr << "usage: heal_measure --original PATH --start NAME=PATH [--start ...] --eval IDS [--steps 200,1000] "
                 "[--probe-steps N] [--lr X | --rel-lr X] [--tokens N] [--seq-len N] [--batch N] [--seed S] [--evaluate-every N] [--patience N] [--trace]\n";
    return 2;
}

} // namespace

int main(int argc, char** argv)
{
    std::string originalPath, evalPath;
    std::vector<std::pair<std::string, std::string>> starts;
    std::vector<std::int64_t> budgets{200, 1000};
    std::int64_t probeSteps = -1;
    bool trace = false;
    HealOptions options;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--original")
            originalPath = value();
        else if (a == "--start") {
            const std::string v = value();
            const auto eq = v.find('=');
            if (eq == std::string::npos)
                return usage();
            starts.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        } else if (a == "--eval")
            evalPath = value();
        else if (a == "--steps")
            budgets = parseList(value());
        else if (a == "--probe-steps")
            probeSteps = std::stoll(value());
        else if (a == "--lr")
            options.learningRate = std::stod(value());
        else if (a == "--rel-lr")
            options.relativeLearningRate = std::stod(value());
        else if (a == "--tokens")
            options.data.tokens = std::stoll(value());
        else if (a == "--seq-len")
            options.data.sequenceLength = std::stoll(value());
        else if (a == "--batch")
            options.batchSequences = std::stoll(value());
        else if (a == "--seed")
            options.seed = std::stoull(value());
        else if (a == "--evaluate-every")
            options.evaluateEvery = std::stoll(value());
        else if (a == "--patience")
            options.patience = std::stoll(value());
        else if (a == "--trace")
            trace = true;
        else
            return usage();
    }
    if (originalPath.empty() || starts.empty() || evalPath.empty())
        return usage();
    try {
        const Model original = loadModel(originalPath);
        const TokenSequences evalIds = readIdSequences(evalPath);
        const auto dataStarted = Clock::now();
        const double dataCpu = cpuSeconds();
        const HealData data = prepareHealData(Transformer(original), nullptr, options);
        const double dataSeconds = secondsSince(dataStarted);
        const double dataCpuSeconds = cpuSeconds() - dataCpu;

        nlohmann::ordered_json out;
        out["threads"] = omp_get_max_threads();
        out["data"] = {{"description", data.description}, {"train_tokens", data.trainTokens()},
                       {"held_out_tokens", data.heldOutTokens()}, {"seconds", dataSeconds},
                       {"cpu_seconds", dataCpuSeconds}};
        out["options"] = {{"lr", options.learningRate ? nlohmann::ordered_json(*options.learningRate) : nlohmann::ordered_json()},
                          {"relative_lr", options.relativeLearningRate}, {"batch", options.batchSequences}, {"seed", options.seed},
                          {"evaluate_every", options.evaluateEvery}, {"patience", options.patience},
                          {"tokens", options.data.tokens}, {"sequence_length", options.data.sequenceLength}};
        std::vector<Model> models;
        for (const auto& [name, path] : starts)
            models.push_back(loadModel(path));
        out["original"] = {{"ppl", perplexity(cpuBackend(), Transformer(original), evalIds).ppl()}};
        nlohmann::ordered_json startsJson = nlohmann::ordered_json::object();
        for (std::size_t s = 0; s < starts.size(); ++s) {
            nlohmann::ordered_json j;
            j["unhealed"] = evaluate(original, models[s], evalIds);
            for (std::int64_t steps : budgets) {
                HealOptions o = options;
                o.steps = steps;
                const auto started = Clock::now();
                const double cpuStarted = cpuSeconds();
                const HealResult r = healModel(original, models[s], data, o);
                const double seconds = secondsSince(started);
                nlohmann::ordered_json h = evaluate(original, r.model, evalIds);
                h["heal_seconds"] = seconds;
                h["heal_cpu_seconds"] = cpuSeconds() - cpuStarted;
                h["held_out_kl_before"] = r.report.before->kl;
                h["held_out_kl_after"] = r.report.after->kl;
                nlohmann::ordered_json layers = nlohmann::ordered_json::array();
                for (const auto& l : r.report.layers)
                    layers.push_back({{"before", l.heldOutBefore}, {"after", l.heldOutAfter}, {"lr", l.learningRate}, {"steps", l.steps},
                                      {"best_step", l.bestStep}, {"seconds", l.seconds}});
                h["layers"] = layers;
                j["healed"][std::to_string(steps)] = h;
                if (trace)
                    std::cerr << starts[s].first << " " << steps << " steps: eval KL " << h["kl"] << ", held-out KL "
                              << r.report.before->kl << " -> " << r.report.after->kl << ", " << seconds << " s\n";
            }
            startsJson[starts[s].first] = j;
        }
        out["starts"] = startsJson;

        if (starts.size() > 1) {
            std::vector<HealStartCandidate> candidates;
            for (std::size_t s = 0; s < starts.size(); ++s)
                candidates.push_back({starts[s].first, &models[s]});
            nlohmann::ordered_json autoJson = nlohmann::ordered_json::object();
            for (std::int64_t steps : budgets) {
                HealOptions o = options;
                o.steps = steps;
                const std::int64_t probe = probeSteps > 0 ? std::min(probeSteps, steps) : defaultProbeSteps(steps);
                nlohmann::ordered_json probes = nlohmann::ordered_json::array();
                std::size_t chosen = 0;
                double probeSeconds = 0.0, probeCpu = 0.0;
                if (probe == steps) {
                    // The probes are the full heals measured above (healing is deterministic): choose from them.
                    for (std::size_t s = 0; s < starts.size(); ++s) {
                        const auto& h = startsJson[starts[s].first]["healed"][std::to_string(steps)];
                        const double kl = h["held_out_kl_after"].get<double>();
                        probes.push_back({{"name", starts[s].first}, {"held_out_kl_unhealed", h["held_out_kl_before"]},
                                          {"held_out_kl_probe", kl}, {"seconds", h["heal_seconds"]}});
                        if (kl < probes[chosen]["held_out_kl_probe"].get<double>())
                            chosen = s;
                        probeSeconds += h["heal_seconds"].get<double>();
                        probeCpu += h["heal_cpu_seconds"].get<double>();
                    }
                } else {
                    const auto started = Clock::now();
                    const double cpuStarted = cpuSeconds();
                    const HealStartChoice choice = chooseHealStart(original, candidates, data, o, probe);
                    for (const auto& p : choice.probes)
                        probes.push_back({{"name", p.name}, {"held_out_kl_unhealed", p.klUnhealed}, {"held_out_kl_probe", p.klProbe},
                                          {"seconds", p.seconds}});
                    chosen = choice.chosen;
                    probeSeconds = secondsSince(started);
                    probeCpu = cpuSeconds() - cpuStarted;
                }
                // The full heal of the chosen start is the one measured above (healing is deterministic).
                autoJson[std::to_string(steps)] = {{"probe_steps", probe}, {"chosen", starts[chosen].first},
                                                   {"probe_seconds", probeSeconds}, {"probe_cpu_seconds", probeCpu},
                                                   {"probes", probes}};
            }
            out["auto"] = autoJson;
        }
        std::cout << out.dump(1) << "\n";
    } catch (const std::exception& e) {
        std::cerr << "heal_measure: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
