#include "cli_common.h"
#include "commands.h"
#include "formats/synthetic_checkpoint.h"
#include "util/error.h"

#include <iostream>

namespace mla::cli {
namespace {

int runSynth(const Arguments& args)
{
    const auto out = args.value("out");
    if (!out)
        throw UsageError{"--out DIR is required"};
    const auto shapeName = args.value("shape");
    if (!shapeName)
        throw UsageError{"--shape is required"};
    SyntheticOptions options;
    options.layers = args.integer("layers", 1, 4096).value_or(0);
    const std::string dtype = args.valueOr("dtype", "bf16");
    const auto parsed = dtypeFromUserName(dtype);
    if (!parsed)
        throw UsageError{"--dtype must be f32, f16 or bf16"};
    options.dtype = *parsed;
    options.seed = static_cast<std::uint64_t>(args.integer("seed", 0, std::numeric_limits<long long>::max()).value_or(1));
    options.shardBytes = static_cast<std::uint64_t>(args.integer("shard-mb", 1, 1 << 30).value_or(0)) << 20;
    options.output = outputOptions(args);
    const SyntheticShape& shape = syntheticShape(*shapeName);
    writeSyntheticCheckpoint(shape, options, *out, terminalProgress(args));
    if (args.has("json")) {
        printJson({{"out", *out}, {"shape", shape.name}, {"layers", options.layers > 0 ? options.layers : shape.config.layers},
                   {"dtype", dtype}});
    } else {
        std::cout << "wrote " << shape.description << " with random weights to " << *out << "\n";
    }
    return 0;
}

std::string shapeList()
{
    std::string s = "Shapes:";
    for (const auto& shape : syntheticShapes())
        s += "\n  " + shape.name + std::string(shape.name.size() < 16 ? 16 - shape.name.size() : 1, ' ') + shape.description;
    return s;
}

} // namespace

CommandSpec synthCommand()
{
    static const std::string details = "Writes a Hugging Face folder with a real model's shape and random weights, for "
                                       "scale tests and benchmarks.\n" + shapeList();
    return {"synth", "--shape NAME [--layers N] [--dtype f32|f16|bf16] [--shard-mb M] [--seed S] --out DIR [--force]",
            "write a synthetic checkpoint with a public model's shape and random weights", details.c_str(),
            {{"shape", "NAME", "model shape (see below)"},
             {"layers", "N", "number of layers (default: the shape's own)"},
             {"dtype", "TYPE", "weight dtype: f32, f16 or bf16 (default bf16)"},
             {"shard-mb", "M", "split into safetensors shards of at most M MiB with an index"},
             {"seed", "S", "random seed (default 1)"},
             {"out", "DIR", "output folder; must be new or empty"},
             forceOption("replace DIR when it holds an earlier output of this tool"),
             {"quiet", nullptr, "no progress output"},
             jsonOption()},
            0, runSynth};
}

} // namespace mla::cli
