#include "cli_common.h"

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

pipeline::OpenedModel openModelArgument(const Arguments& args, const ExecutionContext& context, std::size_t index)
{
    pipeline::OpenRequest request{modelPathArgument(args, index), std::nullopt, true};
    if (auto tok = args.value("tokenizer"))
        request.tokenizer = std::filesystem::path(*tok);
    pipeline::OpenedModel opened = pipeline::openModel(request, context);
    for (const std::string& w : opened.warnings)
        std::cerr << "warning: " << w << "\n";
    return opened;
}

OutputOptions outputOptions(const Arguments& args, const pipeline::OpenedModel* opened)
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
        for (auto& f : pipeline::inputFiles(*opened))
            o.inputs.push_back(std::move(f));
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
        // Padded so that a shorter line overwrites a longer one (stages carry a rate and time left).
        std::fprintf(stderr, "\r%-72s %3d%%", stage.c_str(), percent);
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
