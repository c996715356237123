#include "engine/generator.h"

#include "backend/compute_backend.h"
#include "engine/sampler.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace mla {

std::vector<int> promptIds(const ModelConfig& config, const Tokenizer* tokenizer, const std::string& prompt)
{
    std::vector<int> ids;
    std::optional<int> bos = config.bosId;
    if (!bos && tokenizer)
        bos = tokenizer->bosId();
    if (bos)
        ids.push_back(*bos);
    if (!prompt.empty()) {
        if (!tokenizer)
            throw Error("a text prompt needs a tokenizer: none was found next to the model (use --tokenizer FILE)");
        const std::vector<int> text = tokenizer->encode(prompt, false);
        ids.insert(ids.end(), text.begin(), text.end());
    }
    if (ids.empty())
        throw Error("the model defines no BOS token; give a prompt to start from");
    return ids;
}

namespace {

// Positions a generation runs: the steps asked for, within the model's context, and at least the prompt.
std::int64_t generationPositions(const ModelConfig& c, const std::vector<int>& prompt, const GenerationOptions& options)
{
    if (prompt.empty())
        throw Error("internal: generation needs at least one starting token");
    std::int64_t steps = options.steps;
    if (c.maxPositions > 0)
        steps = std::min(steps, c.maxPositions);
    return std::max<std::int64_t>(steps, static_cast<std::int64_t>(prompt.size()));
}

} // namespace

GenerationResult generate(const ComputeBackend& backend, const Transformer& transformer, const Tokenizer* tokenizer, const std::vector<int>& prompt,
                          const GenerationOptions& options, const std::function<void(int id)>& onToken, const JobControl& job)
{
    const ModelConfig& c = transformer.config();
    const std::int64_t steps = generationPositions(c, prompt, options);

    GenerationResult result;
    // The CPU backend's session is Transformer::forward on a KvCache.
    const std::unique_ptr<DecoderSession> session = backend.decoderSession(transformer, steps);
    result.cacheCapacity = steps;
    result.kvBytesPerToken = session->kvBytesPerToken();
    result.kvElementsPerToken = session->kvElementsPerToken();
    Sampler sampler(options.temperature, options.topP, options.seed);

    std::optional<int> bos = c.bosId;
    if (!bos && tokenizer)
        bos = tokenizer->bosId();
    std::vector<int> eos = c.eosIds;
    if (eos.empty() && tokenizer && tokenizer->eosId())
        eos.push_back(*tokenizer->eosId());

    const auto start = std::chrono::steady_clock::now();
    MatrixRM logits = session->forward(prompt, Logits::Last);
    result.stopReason = "steps";
    std::int64_t position = static_cast<std::int64_t>(prompt.size());
    while (true) {
        job.checkCancelled();
        int next = 0;
        try {
            next = sampler.sample(logits.data(), logits.cols());
        } catch (const Error& e) {
            throw Error(transformer.model().source, std::string(e.what()) + " (at position " + std::to_string(position) + ")");
        }
        if (bos && next == *bos) {
            result.stopReason = "bos";
            break;
        }
        if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
            result.stopReason = "eos";
            break;
        }
        result.ids.push_back(next);
        if (onToken)
            onToken(next);
        if (position >= steps) {
            result.stopReason = c.maxPositions > 0 && steps == c.maxPositions && options.steps > steps ? "context" : "steps";
            break;
        }
        const int token = next;
        logits = session->forward(std::span<const int>(&token, 1), Logits::Last);
        ++position;
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.tokensPerSecond = result.seconds > 0 ? static_cast<double>(result.ids.size()) / result.seconds : 0.0;
    if (tokenizer)
        result.text = tokenizer->decode(result.ids, prompt.back());
    return result;
}

} // namespace mla

namespace mla {
namespace {

// Most KV cache a batch may hold, and most sequences per batch: beyond a few dozen rows a step is bound by compute
// and a larger batch saves nothing, while its logits ([batch, vocab]) and caches keep growing.
constexpr std::uint64_t kBatchCacheBytes = std::uint64_t(1) << 30;
constexpr std::int64_t kMaxBatch = 64;

struct StopTokens {
    std::optional<int> bos;
    std::vector<int> eos;
};

StopTokens stopTokens(const ModelConfig& c, const Tokenizer* tokenizer)
{
    StopTokens s;
    s.bos = c.bosId;
    if (!s.bos && tokenizer)
        s.bos = tokenizer->bosId();
    s.eos = c.eosIds;
    if (s.eos.empty() && tokenizer && tokenizer->eosId())
        s.eos.push_back(*tokenizer->eosId());
    return s;
}

} // namespace

std::int64_t generationBatchSize(const Transformer& transformer, std::int64_t sequences, std::int64_t positions)
{
    const double perToken = transformer.newCache(1).bytesPerToken();
    const double perSequence = std::max(1.0, perToken * static_cast<double>(std::max<std::int64_t>(positions, 1)));
    const std::uint64_t budget = std::min(kBatchCacheBytes, availableMemory().bytes / 4);
    const auto fits = static_cast<std::int64_t>(static_cast<double>(budget) / perSequence);
    return std::clamp<std::int64_t>(std::min(fits, sequences), 1, kMaxBatch);
}

std::vector<GenerationResult> generateBatch(const ComputeBackend& backend, const Transformer& transformer, const Tokenizer* tokenizer,
                                            const std::vector<int>& prompt, const GenerationOptions& options,
                                            std::span<const std::uint64_t> seeds, const JobControl& job, std::int64_t maxBatch,
                                            ForwardObserver* observer)
{
    const ModelConfig& c = transformer.config();
    const std::int64_t steps = generationPositions(c, prompt, options);
    if (observer && (!backend.batchDecodeObservable() || prompt.size() != 1 || (c.maxPositions > 0 && steps + 1 > c.maxPositions)))
        throw Error("internal: an observed generation needs an observable batched decode, a one-token prompt and a "
                    "position for its last token");
    const std::int64_t count = static_cast<std::int64_t>(seeds.size());
    const std::int64_t batch = maxBatch > 0 ? maxBatch : generationBatchSize(transformer, count, steps);
    const StopTokens stop = stopTokens(c, tokenizer);
    const std::int64_t promptLength = static_cast<std::int64_t>(prompt.size());
    // Progress counts the positions each sequence may run; one that stops early counts as done.
    const double totalPositions = static_cast<double>(count) * static_cast<double>(steps - promptLength + 1);
    double donePositions = 0.0;

    std::vector<GenerationResult> results(static_cast<std::size_t>(count));
    for (std::int64_t first = 0; first < count; first += batch) {
        const std::int64_t n = std::min(batch, count - first);
        job.progress(donePositions / totalPositions, "generating");
        const auto start = std::chrono::steady_clock::now();
        // Observed, the last sampled token of a sequence that ran to `steps` positions runs one more step.
        const std::unique_ptr<BatchDecoderSession> session = backend.batchDecoderSession(transformer, n, observer ? steps + 1 : steps);
        const auto step = [&](std::span<const std::int64_t> ids, std::span<const int> tokens, bool logits) {
            return observer ? session->observedStep(ids, tokens, *observer, logits) : session->step(ids, tokens);
        };
        std::vector<Sampler> samplers;
        for (std::int64_t i = 0; i < n; ++i) {
            samplers.emplace_back(options.temperature, options.topP, seeds[static_cast<std::size_t>(first + i)]);
            GenerationResult& r = results[static_cast<std::size_t>(first + i)];
            r.cacheCapacity = steps;
            r.kvBytesPerToken = session->kvBytesPerToken();
            r.kvElementsPerToken = session->kvElementsPerToken();
            r.stopReason = "steps";
        }
        // Running sequences (indices into the batch) and their logits, row k for running[k].
        std::vector<std::int64_t> running(static_cast<std::size_t>(n));
        std::iota(running.begin(), running.end(), 0);
        MatrixRM logits;
        if (promptLength == 1) {
            const std::vector<int> tokens(static_cast<std::size_t>(n), prompt.front());
            logits = step(running, tokens, true);
        } else {
            for (std::int64_t i = 0; i < n; ++i) {
                job.checkCancelled();
                const MatrixRM row = session->prefill(i, prompt);
                if (i == 0)
                    logits.resize(n, row.cols());
                logits.row(i) = row.row(0);
            }
        }
        std::int64_t position = promptLength;
        std::vector<std::int64_t> unrun; // sequences whose last token no step has run (they stopped at `steps`)
        std::vector<int> unrunTokens;
        while (!running.empty()) {
            job.progress((donePositions + static_cast<double>(n) * static_cast<double>(position - promptLength)) / totalPositions,
                         "generating");
            // Each sequence's softmax over the vocabulary on its own thread (the samplers are independent).
            const std::int64_t active = static_cast<std::int64_t>(running.size());
            std::vector<int> sampled(running.size());
            std::vector<std::string> failures(running.size());
#pragma omp parallel for schedule(static) if (active > 1 && logits.cols() >= 4096)
            for (std::int64_t k = 0; k < active; ++k) {
                try {
                    sampled[static_cast<std::size_t>(k)] = samplers[static_cast<std::size_t>(running[static_cast<std::size_t>(k)])].sample(
                        logits.row(static_cast<Eigen::Index>(k)).data(), logits.cols());
                } catch (const std::exception& e) {
                    failures[static_cast<std::size_t>(k)] = e.what();
                }
            }
            std::vector<std::int64_t> next;
            std::vector<int> tokens;
            for (std::size_t k = 0; k < running.size(); ++k) {
                const std::int64_t i = running[k];
                GenerationResult& r = results[static_cast<std::size_t>(first + i)];
                if (!failures[k].empty())
                    throw Error(transformer.model().source, failures[k] + " (at position " + std::to_string(position) + ")");
                const int id = sampled[k];
                if (stop.bos && id == *stop.bos) {
                    r.stopReason = "bos";
                    continue;
                }
                if (std::find(stop.eos.begin(), stop.eos.end(), id) != stop.eos.end()) {
                    r.stopReason = "eos";
                    continue;
                }
                r.ids.push_back(id);
                if (position >= steps) {
                    r.stopReason = c.maxPositions > 0 && steps == c.maxPositions && options.steps > steps ? "context" : "steps";
                    unrun.push_back(i);
                    unrunTokens.push_back(id);
                    continue;
                }
                next.push_back(i);
                tokens.push_back(id);
            }
            running = std::move(next);
            if (running.empty())
                break;
            logits = step(running, tokens, true);
            ++position;
        }
        if (observer && !unrun.empty()) {
            job.checkCancelled();
            step(unrun, unrunTokens, false);
        }
        donePositions += static_cast<double>(n) * static_cast<double>(steps - promptLength + 1);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (std::int64_t i = 0; i < n; ++i) {
            GenerationResult& r = results[static_cast<std::size_t>(first + i)];
            r.seconds = seconds;
            r.tokensPerSecond = seconds > 0 ? static_cast<double>(r.ids.size()) / seconds : 0.0;
            if (tokenizer)
                r.text = tokenizer->decode(r.ids, prompt.back());
        }
    }
    job.progress(1.0, "generating");
    return results;
}

} // namespace mla
