#include "heal/healer.h"

#include "backend/compute_backend.h"
#include "conversion/sequential_converter.h"
#include "engine/evaluation.h"
#include "heal/adamw.h"
#include "heal/heal_block.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <chrono>
#include <cmath>

namespace mla {
namespace {

using heal::BlockBatch;
using heal::BlockTensors;
using Mat = heal::Mat<float>;

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// splitmix64: a tiny generator whose sequence is fixed by this code alone (not by a standard library's).
struct SplitMix {
    std::uint64_t state;
    std::uint64_t next()
    {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

void shuffle(std::vector<std::size_t>& v, SplitMix& rng)
{
    for (std::size_t i = v.size(); i > 1; --i)
        std::swap(v[i - 1], v[static_cast<std::size_t>(rng.next() % i)]);
}

void checkModels(const Model& original, const Model& converted)
{
    const ModelConfig& o = original.config;
    const ModelConfig& c = converted.config;
    if (o.isMla())
        throw Error(original.source, "healing needs the original (not converted) model as its reference");
    if (!c.isMla())
        throw Error(converted.source, "healing needs a converted (MLA) model");
    auto same = [&](std::int64_t a, std::int64_t b, const char* what) {
        if (a != b)
            throw Error(converted.source, std::string("the converted model does not match the original: ") + what + " "
                                              + std::to_string(b) + ", expected " + std::to_string(a));
    };
    same(o.hidden, c.hidden, "hidden size");
    same(o.layers, c.layers, "layers");
    same(o.heads, c.heads, "heads");
    same(o.kvHeads, c.kvHeads, "KV heads");
    same(o.headDim, c.headDim, "head size");
    same(o.ffn, c.ffn, "feed-forward size");
    same(o.vocab, c.vocab, "vocabulary");
    same(static_cast<std::int64_t>(original.layers.size()), static_cast<std::int64_t>(converted.layers.size()), "layer weights");
}

void requireHealMemory(const Model& original, const HealData& data, const HealOptions& options)
{
    const ModelConfig& c = original.config;
    std::int64_t longest = 0;
    for (const auto* set : {&data.train, &data.heldOut})
        for (const auto& s : *set)
            longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(s.size()));
    const auto tokens = static_cast<std::uint64_t>(data.trainTokens() + data.heldOutTokens());
    const auto hidden = static_cast<std::uint64_t>(c.hidden);
    // Per stacked token: the forward intermediates and their gradients (queries, keys, values, contexts in head
    // layout; the MLP's three ffn-wide rows), about twice over.
    const auto perToken = static_cast<std::uint64_t>(2 * (6 * c.qDim() + 4 * c.kvDim() + 10 * c.hidden + 5 * c.ffn)) * 4;
    const std::uint64_t batchTokens = static_cast<std::uint64_t>(std::max<std::int64_t>(options.batchSequences * longest, data.heldOutTokens()));
    const std::uint64_t attentionParams = static_cast<std::uint64_t>(2 * c.qDim() * c.hidden + 2 * c.kvDim() * c.hidden);
    const std::uint64_t bytes = 3 * tokens * hidden * 4 + batchTokens * perToken + 5 * attentionParams * 4
                                + static_cast<std::uint64_t>(3 * c.ffn * c.hidden) * 4;
    requireMemory(bytes, "healing on " + std::to_string(tokens) + " tokens", original.source);
}

struct LayerData {
    const std::vector<MatrixRM>& inputs;   // converted model's hidden states entering the layer, every sequence
    const std::vector<MatrixRM>& targets;  // original model's hidden states after the layer
};

BlockBatch<float> stack(const LayerData& d, const std::vector<std::size_t>& which, float normaliser)
{
    BlockBatch<float> b;
    std::int64_t rows = 0;
    b.starts.push_back(0);
    for (std::size_t i : which) {
        rows += d.inputs[i].rows();
        b.starts.push_back(rows);
    }
    b.input.resize(rows, d.inputs[which.front()].cols());
    b.target.resize(rows, b.input.cols());
    for (std::size_t k = 0; k < which.size(); ++k) {
        b.input.middleRows(b.starts[k], d.inputs[which[k]].rows()) = d.inputs[which[k]];
        b.target.middleRows(b.starts[k], d.targets[which[k]].rows()) = d.targets[which[k]];
    }
    b.normaliser = normaliser;
    return b;
}

// Trains one layer's block in place (params) and reports. Throws Cancelled from the job.
LayerHealReport healLayer(std::int64_t layer, std::int64_t layers, const heal::BlockShape& shape, BlockTensors<float>& params,
                          const heal::FrozenFfn<float>& ffn, const LayerData& data, std::size_t trainCount,
                          const HealOptions& options, const JobControl& job, const HealObserver& observer)
{
    const auto started = Clock::now();
    LayerHealReport report;
    report.layer = layer;
    const heal::TrainMask mask = heal::trainMask(shape, params, options.trainNorms);

    // The normaliser: mean squared target over the training tokens (so a loss of 1 is "as large as the output").
    double normaliser = 1.0;
    if (options.normaliseLoss) {
        double sum = 0.0;
        std::int64_t count = 0;
        for (std::size_t i = 0; i < trainCount; ++i) {
            sum += data.targets[i].cast<double>().squaredNorm();
            count += data.targets[i].size();
        }
        normaliser = count > 0 && sum > 0.0 ? sum / static_cast<double>(count) : 1.0;
    }
    std::vector<std::size_t> heldIndices;
    for (std::size_t i = trainCount; i < data.inputs.size(); ++i)
        heldIndices.push_back(i);
    const BlockBatch<float> held = stack(data, heldIndices, static_cast<float>(normaliser));

    heal::BlockWorkspace<float> workspace;
    report.heldOutBefore = heal::blockLoss(shape, params, ffn, held, &workspace);
    const Mat& q = params[heal::BlockTensor::Q];
    const double queryRms = q.size() ? std::sqrt(q.cast<double>().squaredNorm() / static_cast<double>(q.size())) : 1.0;
    report.learningRate = options.learningRate.value_or(options.relativeLearningRate * queryRms);
    const heal::AdamWSettings settings = adamWSettings(options, report.learningRate);
    if (observer)
        observer({layer, 0, options.steps, report.heldOutBefore, report.heldOutBefore, 0.0, 0, std::nullopt});

    heal::AdamW optimiser(settings, params, mask);
    BlockTensors<float> best = params;
    BlockTensors<float> gradient;
    double bestLoss = report.heldOutBefore;
    std::int64_t sinceBest = 0;
    SplitMix rng{options.seed * 0x2545F4914F6CDD1Dull + static_cast<std::uint64_t>(layer) + 1};
    std::vector<std::size_t> order(trainCount);
    for (std::size_t i = 0; i < trainCount; ++i)
        order[i] = i;
    std::size_t next = order.size();
    const std::int64_t progressEvery = std::max<std::int64_t>(1, options.steps / 100);
    const std::int64_t evaluateEvery = evaluationInterval(options);
    for (std::int64_t step = 1; step <= options.steps; ++step) {
        job.checkCancelled();
        std::vector<std::size_t> batch;
        while (static_cast<std::int64_t>(batch.size()) < std::min<std::int64_t>(options.batchSequences, static_cast<std::int64_t>(trainCount))) {
            if (next == order.size()) {
                shuffle(order, rng);
                next = 0;
            }
            batch.push_back(order[next++]);
        }
        const double loss = heal::blockLossAndGradient(shape, params, ffn, stack(data, batch, static_cast<float>(normaliser)), mask,
                                                       gradient, &workspace);
        report.steps = step;
        if (!std::isfinite(loss)) {
            report.diverged = true;
            break;
        }
        if (step == 1)
            report.trainLossFirst = loss;
        report.trainLossLast = loss;
        optimiser.step(params, gradient);
        HealProgress progress{layer, step, options.steps, loss, std::nullopt, heal::scheduledLearningRate(settings, step), 0, std::nullopt};
        if (step % evaluateEvery == 0 || step == options.steps) {
            const double h = heal::blockLoss(shape, params, ffn, held, &workspace);
            progress.heldOutLoss = h;
            if (h < bestLoss) {
                bestLoss = h;
                best = params;
                report.bestStep = step;
                sinceBest = 0;
            } else if (options.patience > 0 && ++sinceBest >= options.patience) {
                report.stoppedEarly = true;
            }
        }
        if (observer)
            observer(progress);
        if (step % progressEvery == 0 || progress.heldOutLoss)
            job.progress((static_cast<double>(layer) + static_cast<double>(step) / static_cast<double>(options.steps)) / static_cast<double>(layers),
                         "healing layer " + std::to_string(layer + 1) + "/" + std::to_string(layers) + ": step " + std::to_string(step)
                             + "/" + std::to_string(options.steps));
        if (report.stoppedEarly)
            break;
    }
    params = std::move(best);
    report.heldOutAfter = bestLoss;
    report.seconds = secondsSince(started);
    return report;
}

} // namespace

HealQuality measureHealQuality(const Model& original, const Model& model, const TokenSequences& sequences, const JobControl& job)
{
    const ComparisonResult r = compareModels(cpuBackend(), Transformer(model), Transformer(original), sequences, job);
    HealQuality q;
    q.kl = r.kl;
    q.perplexity = r.model.ppl();
    q.originalPerplexity = r.reference.ppl();
    q.top1Agreement = r.top1Agreement;
    q.positions = r.positions;
    return q;
}

HealResult healModel(const Model& original, const Model& converted, const HealData& data, const HealOptions& options,
                     const JobControl& job, const HealObserver& observer)
{
    validateHealOptions(options);
    checkModels(original, converted);
    if (data.train.empty() || data.heldOut.empty())
        throw Error("healing needs training and held-out sequences (" + data.description + ")");
    checkHealSequences(data.train, original.config.vocab, data.description);
    checkHealSequences(data.heldOut, original.config.vocab, data.description);
    requireHealMemory(original, data, options);

    const auto started = Clock::now();
    const ModelConfig& c = converted.config;
    HealResult result{converted, {}};
    HealReport& report = result.report;
    report.dataDescription = data.description;
    report.trainTokens = data.trainTokens();
    report.heldOutTokens = data.heldOutTokens();
    const double measureShare = options.measureModel ? 0.05 : 0.0;
    const JobControl layersJob = job.slice(measureShare, 1.0 - measureShare);

    auto cancelled = [&]() {
        report.cancelled = true;
        if (options.onCancel == HealCancelPolicy::DiscardAll) {
            result.model = converted;
            report.layersHealed = 0;
            report.layers.clear();
        }
        report.seconds = secondsSince(started);
        return result;
    };

    try {
        if (options.measureModel)
            report.before = measureHealQuality(original, converted, data.heldOut, job.slice(0.0, measureShare));

        // Hidden states entering the current layer, training sequences first: the original model's and the
        // (partially healed) converted model's.
        std::vector<MatrixRM> originalStream, convertedStream;
        const Transformer embedder(original);
        for (const auto* set : {&data.train, &data.heldOut}) {
            for (const auto& s : *set) {
                originalStream.push_back(embedder.embed(s));
                convertedStream.push_back(originalStream.back());
            }
        }
        for (std::int64_t l = 0; l < c.layers; ++l) {
            layersJob.progress(static_cast<double>(l) / static_cast<double>(c.layers),
                               "healing layer " + std::to_string(l + 1) + "/" + std::to_string(c.layers));
            const LayerWeights& originalLayer = original.layers[static_cast<std::size_t>(l)];
            std::vector<MatrixRM> targets = originalStream;
            const Transformer reference(singleLayerModel(original, originalLayer, std::nullopt), MlaForm::Expanded);
            for (auto& t : targets)
                reference.runLayer(0, t);

            LayerWeights healed = result.model.layers[static_cast<std::size_t>(l)];
            const heal::BlockShape shape = heal::blockShape(c, l);
            BlockTensors<float> params = heal::blockParameters(healed);
            const heal::FrozenFfn<float> ffn = heal::frozenFfn(healed);
            const LayerData layerData{convertedStream, targets};
            report.layers.push_back(healLayer(l, c.layers, shape, params, ffn, layerData, data.train.size(), options,
                                              layersJob, observer));
            if (observer) {
                const LayerHealReport& done = report.layers.back();
                HealProgress finished{l, done.steps, options.steps, done.trainLossLast, done.heldOutAfter, 0.0, 0, done};
                observer(finished);
            }
            heal::installBlockParameters(params, healed, heal::trainMask(shape, params, options.trainNorms));
            result.model.layers[static_cast<std::size_t>(l)] = healed;
            ++report.layersHealed;

            // Both streams past this layer: the healed layer as the engine runs it (expanded form).
            const Transformer healedLayer(singleLayerModel(original, healed, c.mla->layers[static_cast<std::size_t>(l)]),
                                          MlaForm::Expanded);
            for (auto& h : convertedStream)
                healedLayer.runLayer(0, h);
            originalStream = std::move(targets);
        }
        if (options.measureModel)
            report.after = measureHealQuality(original, result.model, data.heldOut, job.slice(1.0 - measureShare, 1.0));
        job.progress(1.0, "healed " + std::to_string(report.layersHealed) + " layers");
    } catch (const Cancelled&) {
        return cancelled();
    }
    report.seconds = secondsSince(started);
    return result;
}

} // namespace mla
