#include "cli_common.h"

#include "model/model_files.h"
#include "model/model_loader.h"
#include "util/demo_model.h"
#include "util/error.h"
#include "util/json_util.h"

#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace mla::cli {

std::filesystem::path demoModelPath()
{
    return findDemoModel(MLA_DEMO_INSTALL_DIR, MLA_DEMO_BUILD_DIR);
}

std::filesystem::path modelPathArgument(const Arguments& args, std::size_t index)
{
    auto p = args.positional(index);
    if (!p || args.has("demo")) {
        if (p && index == 0 && args.has("demo"))
            throw UsageError{"give either MODEL or --demo, not both"};
        return demoModelPath();
    }
    return *p;
}

OpenedModel openModel(const Arguments& args, std::size_t index)
{
    OpenedModel opened{loadModel(modelPathArgument(args, index)), nullptr, {}};
    std::filesystem::path tokenizerFile; // named in errors: the tokenizer file, or the GGUF that embeds it
    if (auto tok = args.value("tokenizer")) {
        opened.tokenizer = loadTokenizer(*tok);
        opened.tokenizerSource = *tok;
        tokenizerFile = *tok;
    } else if (opened.model.embeddedVocabulary && !opened.model.embeddedVocabulary->tokens.empty()) {
        opened.tokenizer = tokenizerFromEmbedded(*opened.model.embeddedVocabulary, opened.model.source);
        opened.tokenizerSource = "embedded (GGUF)";
        tokenizerFile = opened.model.source;
    } else if (auto found = findTokenizerNextTo(opened.model.source)) {
        try {
            opened.tokenizer = loadTokenizer(*found);
            opened.tokenizerSource = found->string();
            tokenizerFile = *found;
        } catch (const Error& e) {
            std::cerr << "warning: ignoring the tokenizer next to the model: " << e.what() << "\n";
        }
    }
    if (opened.tokenizer && opened.tokenizer->vocabSize() > opened.model.config.vocab)
        throw Error(tokenizerFile, "tokenizer has " + std::to_string(opened.tokenizer->vocabSize())
                                                + " tokens, more than the model's vocabulary of "
                                                + std::to_string(opened.model.config.vocab));
    return opened;
}

OutputOptions outputOptions(const Arguments& args, const OpenedModel* opened)
{
    OutputOptions o;
    o.force = args.has("force");
    for (const auto& p : args.positionals())
        o.inputs.emplace_back(p);
    for (const char* name : {"tokenizer", "calib-text", "calib-ids", "reference", "text", "ids", "model"}) {
        if (auto v = args.value(name))
            o.inputs.emplace_back(*v);
    }
    if (opened) {
        for (const auto& f : modelInputFiles(opened->model))
            o.inputs.push_back(f);
        if (!opened->tokenizerSource.empty() && opened->tokenizerSource != "embedded (GGUF)")
            o.inputs.emplace_back(opened->tokenizerSource);
    }
    return o;
}

void printJson(const nlohmann::ordered_json& json)
{
    std::cout << dumpJson(json, 2) << std::endl;
}

JobControl terminalProgress(const Arguments& args)
{
    if (args.has("json") || args.has("quiet") || !::isatty(STDERR_FILENO))
        return {};
    return JobControl(nullptr, [last = std::string(), lastPercent = -1](double f, const std::string& stage) mutable {
        const int percent = static_cast<int>(f * 100.0);
        if (percent == lastPercent && stage == last)
            return;
        lastPercent = percent;
        last = stage;
        std::fprintf(stderr, "\r%-40s %3d%%", stage.c_str(), percent);
        if (f >= 1.0)
            std::fprintf(stderr, "\n");
        std::fflush(stderr);
    });
}

OptionSpec tokenizerOption() { return {"tokenizer", "FILE", "tokenizer file (tokenizer.json, tokenizer.model or llama2.c .bin); default: found next to the model"}; }
OptionSpec demoOption() { return {"demo", nullptr, "use the bundled demo model (stories260K); also the default when MODEL is omitted"}; }
OptionSpec forceOption(const char* help) { return {"force", nullptr, help}; }
OptionSpec jsonOption() { return {"json", nullptr, "print the result as JSON on stdout"}; }

} // namespace mla::cli
