#include "conversion/sanity_check.h"

#include "engine/generator.h"

namespace mla {

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
    g.temperature = 0.0f;
    for (std::size_t i = 0; i < options.prompts.size(); ++i) {
        job.progress(0.7 + 0.3 * static_cast<double>(i) / static_cast<double>(options.prompts.size()), "generating");
        GenerationComparison cmp;
        cmp.prompt = options.prompts[i];
        const std::vector<int> start = promptIds(original.config(), tokenizer, cmp.prompt);
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
