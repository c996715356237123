#include "conversion/sanity_check.h"

#include "engine/generator.h"

namespace mla {

SanityReport runSanityCheck(const ComputeBackend& backend, const Transformer& original, const Transformer& converted, const Tokenizer* tokenizer,
                            const TokenSequences& evaluation, const SanityOptions& options, const JobControl& job)
{
    SanityReport report;
    const ComparisonResult c = compareModels(backend, converted, original, evaluation, job.slice(0.0, 0.7));
    report.originalPpl = c.reference.ppl();
    report.convertedPpl = c.model.ppl();
    report.kl = c.kl;
    report.top1Agreement = c.top1Agreement;
    report.evaluatedTokens = c.positions;

    GenerationOptions g;
    g.steps = options.generationSteps;
    g.temperature = 0.0f;
    for (std::size_t i = 0; i < options.prompts.size(); ++i) {
        job.progress(0.7 + 0.3 * static_cast<double>(i) / static_cast<double>(options.prompts.size()), "generating");
        GenerationComparison cmp;
        cmp.prompt = options.prompts[i];
        const std::vector<int> start = promptIds(original.config(), tokenizer, cmp.prompt);
        const GenerationResult a = generate(backend, original, tokenizer, start, g, {}, job);
        const GenerationResult b = generate(backend, converted, tokenizer, start, g, {}, job);
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
