#include "cli_common.h"
#include "commands.h"
#include "device_option.h"
#include "kv_cache_option.h"
#include "pipeline/evaluate.h"
#include "util/error.h"

#include <iostream>

namespace mla::cli {
namespace {

MlaForm formFrom(const Arguments& args)
{
    const std::string form = args.valueOr("mla-form", "absorbed");
    if (form == "absorbed")
        return MlaForm::Absorbed;
    if (form == "expanded")
        return MlaForm::Expanded;
    throw UsageError{"--mla-form must be absorbed or expanded"};
}

int runGenerate(const Arguments& args)
{
    const ExecutionContext context(backendFromDeviceOption(args));
    GenerationOptions options;
    options.steps = args.integer("steps", 1, 1 << 24).value_or(256);
    options.temperature = static_cast<float>(args.number("temperature", 0.0, 100.0).value_or(0.0));
    options.topP = static_cast<float>(args.number("top-p", 0.0, 1.0).value_or(0.9));
    options.seed = static_cast<std::uint64_t>(args.integer("seed", 0, std::numeric_limits<long long>::max()).value_or(42));
    const MlaForm form = formFrom(args);
    const KvCacheFormat cacheFormat = kvCacheFormatFrom(args);
    const pipeline::OpenedModel opened = openModelArgument(args, context);
    const std::vector<int> prompt = pipeline::startIds(opened, args.valueOr("prompt", ""));

    const bool json = args.has("json");
    int previous = prompt.back();
    auto stream = [&](int id) {
        if (json || !opened.tokenizer)
            return;
        std::cout << opened.tokenizer->decodePiece(previous, id) << std::flush;
        previous = id;
    };
    const GenerationResult r = pipeline::generateText(opened, form, prompt, options, stream, context, cacheFormat);
    if (json) {
        nlohmann::ordered_json j;
        j["ids"] = r.ids;
        j["text"] = r.text;
        j["tokens_per_second"] = r.tokensPerSecond;
        j["kv_bytes_per_token"] = r.kvBytesPerToken;
        j["kv_cache"] = kvCacheFormatName(cacheFormat);
        j["kv_elements_per_token"] = r.kvElementsPerToken;
        j["prompt_ids"] = prompt;
        j["stop_reason"] = r.stopReason;
        j["mla_form"] = opened.model->config.isMla() ? (form == MlaForm::Absorbed ? "absorbed" : "expanded") : "none";
        printJson(j);
        return 0;
    }
    if (!opened.tokenizer) {
        for (std::size_t i = 0; i < r.ids.size(); ++i)
            std::cout << (i ? " " : "") << r.ids[i];
    }
    std::cout << std::endl;
    std::cerr << "achieved tok/s: " << r.tokensPerSecond << " (" << r.ids.size() << " tokens, KV cache "
              << kvCacheFormatName(cacheFormat) << ", " << r.kvBytesPerToken << " bytes per token)\n";
    return 0;
}

} // namespace

CommandSpec generateCommand()
{
    return {"generate",
            "[MODEL] [--tokenizer F] [--prompt TEXT] [--steps N] [--temperature T] [--top-p P] [--seed S] [--kv-cache TYPE] [--json]",
            "generate text from BOS (then the prompt), like llama2.c",
            "Runs N positions (BOS and prompt included) and stops early when the model emits BOS or EOS. Temperature 0 "
            "(the default) is greedy argmax; otherwise sampling follows llama2.c exactly, so a seed reproduces its output.",
            {demoOption(), tokenizerOption(),
             {"prompt", "TEXT", "text to continue (needs a tokenizer)"},
             {"steps", "N", "positions to run, BOS and prompt included (default 256, capped at the context length)"},
             {"temperature", "T", "sampling temperature; 0 = greedy (default 0)"},
             {"top-p", "P", "nucleus sampling threshold in (0, 1); 0 or 1 disables it (default 0.9)"},
             {"seed", "S", "random seed (default 42)"},
             {"mla-form", "FORM", "for MLA models: absorbed (latent cache, default) or expanded (rebuilt keys/values)"},
             kvCacheOption(), kvCacheRopeOption(), kvCacheGroupOption(),
             deviceOption(),
             jsonOption()},
            1, runGenerate};
}

} // namespace mla::cli
