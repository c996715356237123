#include "cli_common.h"
#include "commands.h"
#include "device_option.h"
#include "kv_cache_option.h"
#include "pipeline/evaluate.h"
#include "util/error.h"
#include "util/input_file.h"

#include <iostream>

namespace mla::cli {
namespace {

TokenSequences sequencesFrom(const Arguments& args, const pipeline::OpenedModel& opened)
{
    const bool ids = args.has("ids");
    const bool text = args.has("text");
    if (ids == text)
        throw UsageError{"give exactly one of --ids FILE or --text FILE"};
    if (ids)
        return pipeline::evaluationIds(opened, *args.value("ids"));
    if (!opened.tokenizer)
        throw Error("--text needs a tokenizer: none was found next to the model (use --tokenizer FILE)");
    const ModelConfig& c = opened.model->config;
    const std::int64_t length = args.integer("seq-len", 2, 1 << 20).value_or(c.maxPositions > 0 ? c.maxPositions : 512);
    return pipeline::evaluationText(opened, *args.value("text"), length);
}

int runEval(const Arguments& args)
{
    const KvCacheFormat cacheFormat = kvCacheFormatFrom(args); // a usage error before any work
    const auto backend = backendFromDeviceOption(args);
    const ExecutionContext context(backend, terminalProgress(args));
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext(backend));
    const TokenSequences sequences = sequencesFrom(args, opened);
    std::optional<pipeline::OpenedModel> reference;
    if (auto path = args.value("reference"))
        reference = pipeline::openModel({*path, std::nullopt, false}, ExecutionContext(backend));
    const pipeline::EvaluationOutcome r = pipeline::evaluate(opened, sequences, reference ? &*reference : nullptr, context, cacheFormat);
    nlohmann::ordered_json j;
    if (r.comparison) {
        const ComparisonResult& cmp = *r.comparison;
        j["ppl"] = cmp.model.ppl();
        j["tokens"] = cmp.positions;
        j["reference_ppl"] = cmp.reference.ppl();
        j["kl"] = cmp.kl;
        j["top1_agreement"] = cmp.top1Agreement;
        j["nll"] = cmp.model.meanNll();
        j["reference_nll"] = cmp.reference.meanNll();
        j["kv_bytes_per_token"] = cmp.model.kvBytesPerToken;
        j["reference_kv_bytes_per_token"] = cmp.reference.kvBytesPerToken;
    } else {
        j["ppl"] = r.perplexity.ppl();
        j["tokens"] = r.perplexity.tokens;
        j["nll"] = r.perplexity.meanNll();
        j["kv_bytes_per_token"] = r.perplexity.kvBytesPerToken;
    }
    j["kv_cache"] = kvCacheFormatName(cacheFormat);
    j["sequences"] = sequences.size();
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    std::cout << "perplexity      " << j["ppl"].get<double>() << " over " << j["tokens"].get<std::int64_t>() << " tokens ("
              << sequences.size() << " sequences)\n";
    std::cout << "KV cache        " << j["kv_cache"].get<std::string>() << ", " << j["kv_bytes_per_token"].get<double>()
              << " bytes per token\n";
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
    return {"eval", "[MODEL] [--tokenizer F] (--ids FILE | --text FILE) [--reference REF] [--kv-cache TYPE] [--json]",
            "perplexity of a model on token ids or text; with --reference, KL divergence and top-1 agreement too",
            "An ids FILE holds one sequence per line of whitespace-separated ids, used exactly as given (no BOS added). "
            "A text FILE is tokenised and cut into windows of --seq-len tokens, each starting with BOS.",
            {demoOption(), tokenizerOption(),
             {"ids", "FILE", "token id sequences, one per line"},
             {"text", "FILE", "plain text to tokenise"},
             {"seq-len", "N", "window length for --text (default: the model's context)"},
             {"reference", "REF", "a second model (e.g. the original) to compare against (its KV cache stays f32)"},
             kvCacheOption(), kvCacheRopeOption(), kvCacheGroupOption(),
             {"quiet", nullptr, "no progress output"},
             deviceOption(),
             jsonOption()},
            1, runEval};
}

} // namespace mla::cli
