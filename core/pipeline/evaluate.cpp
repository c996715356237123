#include "pipeline/evaluate.h"

#include "util/error.h"
#include "util/input_file.h"

namespace mla::pipeline {

TokenSequences evaluationIds(const OpenedModel& model, const std::filesystem::path& file)
{
    const std::int64_t vocab = model.model->config.vocab;
    TokenSequences sequences = readIdSequences(file);
    bool scorable = false;
    for (std::size_t s = 0; s < sequences.size(); ++s) {
        scorable = scorable || sequences[s].size() >= 2;
        for (const int id : sequences[s]) {
            if (id >= vocab)
                throw Error(file, "sequence " + std::to_string(s + 1) + " holds id " + std::to_string(id)
                                      + ", outside the model's vocabulary of " + std::to_string(vocab) + " ids");
        }
    }
    if (!scorable)
        throw Error(file, "no sequence has two or more ids to evaluate");
    return sequences;
}

TokenSequences evaluationText(const OpenedModel& model, const std::filesystem::path& file, std::int64_t length)
{
    if (!model.tokenizer)
        throw Error(file, "text needs a tokenizer, and the model has none");
    const std::string content = readInputFile(file, kMaxTextInputBytes, "evaluation text");
    const ModelConfig& c = model.model->config;
    // Each window starts with BOS so that every window is evaluated the way the model saw text in training.
    const std::vector<int> all = model.tokenizer->encode(content, false);
    if (all.size() < 2)
        throw Error(file, "holds too little text to evaluate");
    TokenSequences sequences = splitIntoSequences(all, length - (c.bosId ? 1 : 0));
    if (c.bosId) {
        for (auto& s : sequences)
            s.insert(s.begin(), *c.bosId);
    }
    return sequences;
}

EvaluationOutcome evaluate(const OpenedModel& model, const TokenSequences& sequences, const OpenedModel* reference,
                           const ExecutionContext& context, const KvCacheFormat& cacheFormat)
{
    const Transformer transformer(*model.model, MlaForm::Absorbed, cacheFormat);
    EvaluationOutcome out;
    if (reference) {
        const Transformer referenceTransformer(*reference->model);
        out.comparison = compareModels(context.backend(), transformer, referenceTransformer, sequences, context.job());
        out.perplexity = out.comparison->model;
    } else {
        out.perplexity = perplexity(context.backend(), transformer, sequences, context.job());
    }
    return out;
}

std::vector<int> startIds(const OpenedModel& model, const std::string& prompt)
{
    return promptIds(model.model->config, model.tokenizer.get(), prompt);
}

GenerationResult generateText(const OpenedModel& model, MlaForm form, const std::vector<int>& start, const GenerationOptions& options,
                              const std::function<void(int id)>& onToken, const ExecutionContext& context,
                              const KvCacheFormat& cacheFormat)
{
    const Transformer transformer(*model.model, form, cacheFormat);
    return generate(context.backend(), transformer, model.tokenizer.get(), start, options, onToken, context.job());
}

} // namespace mla::pipeline
