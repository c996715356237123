#include "pipeline/open_model.h"

#include "model/model_files.h"
#include "model/model_loader.h"
#include "util/error.h"

namespace mla::pipeline {

OpenedModel openModel(const OpenRequest& request, const ExecutionContext& context)
{
    const JobControl& job = context.job();
    job.progress(0.0, "opening " + request.model.filename().string());
    OpenedModel opened;
    auto model = std::make_shared<Model>(loadModel(request.model));
    if (request.withTokenizer) {
        job.progress(0.8, "reading the tokenizer");
        std::filesystem::path tokenizerFile; // named in errors: the tokenizer file, or the GGUF that embeds it
        if (request.tokenizer) {
            opened.tokenizer = loadTokenizer(*request.tokenizer);
            opened.tokenizerSource = request.tokenizer->string();
            tokenizerFile = *request.tokenizer;
        } else if (model->embeddedVocabulary && !model->embeddedVocabulary->tokens.empty()) {
            opened.tokenizer = tokenizerFromEmbedded(*model->embeddedVocabulary, model->source);
            opened.tokenizerSource = "embedded (GGUF)";
            tokenizerFile = model->source;
        } else if (auto found = findTokenizerNextTo(model->source)) {
            try {
                opened.tokenizer = loadTokenizer(*found);
                opened.tokenizerSource = found->string();
                tokenizerFile = *found;
            } catch (const Error& e) {
                opened.warnings.push_back(std::string("ignoring the tokenizer next to the model: ") + e.what());
            }
        }
        if (opened.tokenizer && opened.tokenizer->vocabSize() > model->config.vocab)
            throw Error(tokenizerFile, "tokenizer has " + std::to_string(opened.tokenizer->vocabSize())
                                           + " tokens, more than the model's vocabulary of " + std::to_string(model->config.vocab));
    }
    opened.model = std::move(model);
    job.progress(1.0, "model open");
    return opened;
}

std::vector<std::filesystem::path> inputFiles(const OpenedModel& model)
{
    std::vector<std::filesystem::path> files;
    if (model.model)
        files = modelInputFiles(*model.model);
    if (!model.tokenizerSource.empty() && model.tokenizerSource != "embedded (GGUF)")
        files.emplace_back(model.tokenizerSource);
    return files;
}

} // namespace mla::pipeline
