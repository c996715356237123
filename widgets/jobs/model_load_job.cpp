#include "jobs/model_load_job.h"

#include "model/model_loader.h"
#include "util/error.h"

namespace mla {

LoadedModel openCheckpoint(const std::filesystem::path& path, const JobControl& job)
{
    job.progress(0.0, "opening " + path.filename().string());
    LoadedModel loaded;
    auto model = std::make_shared<Model>(loadModel(path));
    job.progress(0.8, "reading the tokenizer");
    std::filesystem::path tokenizerFile;
    if (model->embeddedVocabulary && !model->embeddedVocabulary->tokens.empty()) {
        loaded.tokenizer = tokenizerFromEmbedded(*model->embeddedVocabulary, model->source);
        loaded.tokenizerSource = QStringLiteral("embedded (GGUF)");
        tokenizerFile = model->source;
    } else if (auto found = findTokenizerNextTo(model->source)) {
        try {
            loaded.tokenizer = loadTokenizer(*found);
            loaded.tokenizerSource = QString::fromStdString(found->string());
            tokenizerFile = *found;
        } catch (const Error& e) {
            loaded.warnings << QObject::tr("Ignoring the tokenizer next to the model: %1").arg(QString::fromUtf8(e.what()));
        }
    }
    if (loaded.tokenizer && loaded.tokenizer->vocabSize() > model->config.vocab) {
        loaded.warnings << QObject::tr("Ignoring the tokenizer %1: it has %2 tokens, more than the model's vocabulary of %3")
                               .arg(QString::fromStdString(tokenizerFile.string()))
                               .arg(loaded.tokenizer->vocabSize())
                               .arg(model->config.vocab);
        loaded.tokenizer.reset();
        loaded.tokenizerSource.clear();
    }
    loaded.model = std::move(model);
    job.progress(1.0, "model open");
    return loaded;
}

void ModelLoadJob::start(const QString& path)
{
    const std::filesystem::path p = path.toStdString();
    run<LoadedModel>(
        tr("Opening %1").arg(QString::fromStdString(p.filename().string())),
        [p](const ExecutionContext& ctx) { return openCheckpoint(p, ctx.job()); },
        [this](LoadedModel&& m) { Q_EMIT loaded(m); });
}

} // namespace mla
