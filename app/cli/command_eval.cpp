#include "cli_common.h"
#include "commands.h"
#include "device_option.h"
#include "engine/evaluation.h"
#include "model/model_loader.h"
#include "util/error.h"
#include "util/input_file.h"

#include <fstream>
#include <iostream>
#include <sstream>

namespace mla::cli {
namespace {

TokenSequences sequencesFrom(const Arguments& args, const OpenedModel& opened)
{
    const bool ids = args.has("ids");
    const bool text = args.has("text");
    if (ids == text)
        throw UsageError{"give exactly one of --ids FILE or --text FILE"};
    if (ids) {
        // Checked here, against this model, so that a bad id is reported with the file it came from.
        const std::filesystem::path path = *args.value("ids");
        TokenSequences sequences = readIdSequences(path);
        bool scorable = false;
        for (std::size_t s = 0; s < sequences.size(); ++s) {
            scorable = scorable || sequences[s].size() >= 2;
            for (const int id : sequences[s]) {
                if (id >= opened.model.config.vocab)
                    throw Error(path, "sequence " + std::to_string(s + 1) + " holds id " + std::to_string(id)
                                          + ", outside the model's vocabulary of " + std::to_string(opened.model.config.vocab)
                                          + " ids");
            }
        }
        if (!scorable)
            throw Error(path, "no sequence has two or more ids to evaluate");
        return sequences;
    }
    if (!opened.tokenizer)
        throw Error("--text needs a tokenizer: none was found next to the model (use --tokenizer FILE)");
    const std::filesystem::path path = *args.value("text");
    const std::string content = readInputFile(path, kMaxTextInputBytes, "evaluation text");
    const std::int64_t length = args.integer("seq-len", 2, 1 << 20).value_or(
        opened.model.config.maxPositions > 0 ? opened.model.config.maxPositions : 512);
    // Each window starts with BOS so that every window is evaluated the way the model saw text in training.
    const std::vector<int> all = opened.tokenizer->encode(content, false);
    if (all.size() < 2)
        throw Error(path, "holds too little text to evaluate");
    std::vector<int> withoutBos = all;
    TokenSequences sequences = splitIntoSequences(withoutBos, length - (opened.model.config.bosId ? 1 : 0));
    if (opened.model.config.bosId) {
        for (auto& s : sequences)
            s.insert(s.begin(), *opened.model.config.bosId);
    }
    return sequences;
}

int runEval(const Arguments& args)
{
    applyDeviceOption(args);
    const OpenedModel opened = openModel(args);
    const TokenSequences sequences = sequencesFrom(args, opened);
    const JobControl job = terminalProgress(args);
    const Transformer transformer(opened.model);
    nlohmann::ordered_json j;
    if (auto reference = args.value("reference")) {
        const Model referenceModel = loadModel(*reference);
        const Transformer referenceTransformer(referenceModel);
        const ComparisonResult r = compareModels(transformer, referenceTransformer, sequences, job);
        j["ppl"] = r.model.ppl();
        j["tokens"] = r.positions;
        j["reference_ppl"] = r.reference.ppl();
        j["kl"] = r.kl;
        j["top1_agreement"] = r.top1Agreement;
        j["nll"] = r.model.meanNll();
        j["reference_nll"] = r.reference.meanNll();
    } else {
        const PerplexityResult r = perplexity(transformer, sequences, job);
        j["ppl"] = r.ppl();
        j["tokens"] = r.tokens;
        j["nll"] = r.meanNll();
    }
    j["sequences"] = sequences.size();
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << "perplexity      " << j["ppl"].get<double>() << " over " << j["tokens"].get<std::int64_t>() << " tokens ("
              << sequences.size() << " sequences)\n";
    if (j.contains("reference_ppl")) {
        std::cout << "reference       " << j["reference_ppl"].get<double>() << "\n"
                  << "KL(ref||model)  " << j["kl"].get<double>() << " nats per token\n"
                  << "top-1 agreement " << j["top1_agreement"].get<double>() << "\n";
    }
    return 0;
}

} // namespace

CommandSpec evalCommand()
{
    return {"eval", "[MODEL] [--tokenizer F] (--ids FILE | --text FILE) [--reference REF] [--json]",
            "perplexity of a model on token ids or text; with --reference, KL divergence and top-1 agreement too",
            "An ids FILE holds one sequence per line of whitespace-separated ids, used exactly as given (no BOS added). "
            "A text FILE is tokenised and cut into windows of --seq-len tokens, each starting with BOS.",
            {demoOption(), tokenizerOption(),
             {"ids", "FILE", "token id sequences, one per line"},
             {"text", "FILE", "plain text to tokenise"},
             {"seq-len", "N", "window length for --text (default: the model's context)"},
             {"reference", "REF", "a second model (e.g. the original) to compare against"},
             {"quiet", nullptr, "no progress output"},
             deviceOption(),
             jsonOption()},
            1, runEval};
}

} // namespace mla::cli
