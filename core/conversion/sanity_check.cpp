#include "conversion/sanity_check.h"

#include "engine/generator.h"
#include "util/error.h"

#include <algorithm>
#include <charconv>

namespace mla {

std::vector<int> parsePromptIds(std::string_view text, std::int64_t vocab)
{
    std::vector<int> ids;
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r') {
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < text.size() && text[end] != ' ' && text[end] != ',' && text[end] != '\t' && text[end] != '\n' && text[end] != '\r')
            ++end;
        const std::string_view entry = text.substr(i, end - i);
        long long value = -1;
        const auto [ptr, ec] = std::from_chars(entry.data(), entry.data() + entry.size(), value);
        if (ec != std::errc() || ptr != entry.data() + entry.size() || value < 0 || value >= vocab)
            throw Error("prompt token ids: '" + std::string(entry) + "' is not a token id of this model (0 to " + std::to_string(vocab - 1)
                        + ")");
        ids.push_back(static_cast<int>(value));
        i = end;
    }
    return ids;
}

std::int64_t unknownPromptTokens(const Tokenizer& tokenizer, std::string_view prompt)
{
    const std::optional<int> unk = tokenizer.unknownId();
    if (!unk || prompt.empty())
        return 0;
    const std::vector<int> ids = tokenizer.encode(prompt, false);
    return std::count(ids.begin(), ids.end(), *unk);
}

std::vector<int> sanityStartIds(const ModelConfig& config, const Tokenizer* tokenizer, const std::string& prompt, bool promptIsIds)
{
    if (!promptIsIds) {
        if (!prompt.empty() && !tokenizer)
            throw Error("a text prompt needs a tokenizer and none was found next to the model: give the prompt as token ids");
        return promptIds(config, tokenizer, prompt);
    }
    std::vector<int> ids = promptIds(config, tokenizer, ""); // BOS, as a text prompt starts
    const std::vector<int> given = parsePromptIds(prompt, config.vocab);
    ids.insert(ids.end(), given.begin(), given.end());
    if (ids.empty())
        throw Error("the model defines no BOS token; give at least one prompt token id to start from");
    return ids;
}

double SanityReport::combinedSaving() const
{
    return originalBf16KvBytesPerToken > 0.0 ? 1.0 - withCache.kvBytesPerToken / originalBf16KvBytesPerToken : 0.0;
}

SanityReport runSanityCheck(const ComputeBackend& backend, const Transformer& original, const Transformer& converted, const Tokenizer* tokenizer,
                            const TokenSequences& evaluation, const SanityOptions& options, const JobControl& job)
{
    SanityReport report;
    const bool float32 = options.cacheFormat.isFloat32();
    const Transformer plainOriginal = original.withCacheFormat({});
    const Transformer plainConverted = converted.withCacheFormat({});
    const ComparisonResult c = compareModels(backend, plainConverted, plainOriginal, evaluation, job.slice(0.0, float32 ? 0.7 : 0.35));
    report.originalPpl = c.reference.ppl();
    report.convertedPpl = c.model.ppl();
    report.kl = c.kl;
    report.top1Agreement = c.top1Agreement;
    report.evaluatedTokens = c.positions;
    report.withCache.format = kvCacheFormatName(options.cacheFormat);
    const ComparisonResult q = float32 ? c
                                       : compareModels(backend, converted.withCacheFormat(options.cacheFormat), plainOriginal, evaluation,
                                                       job.slice(0.35, 0.7));
    report.withCache.ppl = q.model.ppl();
    report.withCache.kl = q.kl;
    report.withCache.top1Agreement = q.top1Agreement;
    report.withCache.kvBytesPerToken = q.model.kvBytesPerToken;
    report.originalBf16KvBytesPerToken = original.withCacheFormat(KvCacheFormat::uniform({CacheFormat::BF16})).newCache(1).bytesPerToken();

    GenerationOptions g;
    g.steps = options.generationSteps;
    g.temperature = options.temperature;
    g.topP = options.topP;
    g.seed = options.samplingSeed;
    for (std::size_t i = 0; i < options.prompts.size(); ++i) {
        job.progress(0.7 + 0.3 * static_cast<double>(i) / static_cast<double>(options.prompts.size()), "generating");
        GenerationComparison cmp;
        cmp.prompt = options.prompts[i];
        const std::vector<int> start = sanityStartIds(original.config(), tokenizer, cmp.prompt, options.promptsAreIds);
        cmp.startIds = start;
        if (tokenizer && !options.promptsAreIds)
            cmp.unknownTokens = unknownPromptTokens(*tokenizer, cmp.prompt);
        const GenerationResult a = generate(backend, plainOriginal, tokenizer, start, g, {}, job);
        const GenerationResult b = generate(backend, plainConverted, tokenizer, start, g, {}, job);
        cmp.originalIds = a.ids;
        cmp.convertedIds = b.ids;
        cmp.originalText = a.text;
        cmp.convertedText = b.text;
        const std::size_t n = std::min(a.ids.size(), b.ids.size());
        for (std::size_t t = 0; t < n && cmp.firstDifference < 0; ++t) {
            if (a.ids[t] != b.ids[t])
                cmp.firstDifference = static_cast<std::int64_t>(t);
        }
        if (cmp.firstDifference < 0 && a.ids.size() != b.ids.size())
            cmp.firstDifference = static_cast<std::int64_t>(n);
        report.originalKvBytesPerToken = a.kvBytesPerToken;
        report.convertedKvBytesPerToken = b.kvBytesPerToken;
        report.generations.push_back(std::move(cmp));
    }
    job.progress(1.0, "sanity check done");
    return report;
}

} // namespace mla
