#include "engine/generator.h"

#include "backend/compute_backend.h"
#include "engine/sampler.h"
#include "util/error.h"

#include <algorithm>
#include <chrono>

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

GenerationResult generate(const ComputeBackend& backend, const Transformer& transformer, const Tokenizer* tokenizer, const std::vector<int>& prompt,
                          const GenerationOptions& options, const std::function<void(int id)>& onToken, const JobControl& job)
{
    const ModelConfig& c = transformer.config();
    if (prompt.empty())
        throw Error("internal: generation needs at least one starting token");
    std::int64_t steps = options.steps;
    if (c.maxPositions > 0)
        steps = std::min(steps, c.maxPositions);
    steps = std::max<std::int64_t>(steps, static_cast<std::int64_t>(prompt.size()));

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
