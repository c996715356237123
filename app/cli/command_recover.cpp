#include "cli_common.h"
#include "commands.h"
#include "pipeline/recover.h"
#include "util/child_process.h"
#include "util/error.h"

#include <atomic>
#include <csignal>
#include <iostream>
#include <mutex>

namespace mla::cli {
namespace {

// The recipe's options this command passes on, as distill.py names them (pipeline::recipeOptionNames).
const std::vector<OptionSpec>& recipeOptions()
{
    static const std::vector<OptionSpec> options = {
        {"steps", "N", "optimizer steps (required)"},
        {"ids", "FILE", "training token ids, one sequence per line (the --ids format of eval/analyze)"},
        {"sample", "N", "or: draw N training sequences from the teacher at temperature 1"},
        {"text", "FILE", "or: training text, tokenised with the student's tokenizer (needs transformers)"},
        {"eval-ids", "FILE", "held-out token ids (default: 16 sequences drawn apart from the training data)"},
        {"eval-sequences", "N", "held-out sequences when no --eval-ids (default 16)"},
        {"batch", "N", "sequences per optimizer step (default 16)"},
        {"grad-accum", "N", "micro-batches per optimizer step (default 1)"},
        {"seq-len", "N", "training sequence length (default 256, at most the context)"},
        {"lr", "X", "peak learning rate (default 1e-3; AdamW, cosine decay)"},
        {"min-lr-ratio", "X", "cosine floor as a fraction of --lr (default 0.1)"},
        {"warmup", "N", "linear warm-up steps (default 0)"},
        {"weight-decay", "X", "AdamW weight decay (default 0)"},
        {"clip", "X", "gradient norm clip, 0 = off (default 1)"},
        {"train", "WHAT", "attention (default) or all parameters"},
        {"lm-weight", "X", "weight of the next-token loss added to the KL (default 0)"},
        {"temperature", "X", "distillation temperature (default 1)"},
        {"seed", "S", "seed of data order and sampling (default 0)"},
        {"device", "D", "auto (a GPU when PyTorch has one), cpu or cuda"},
        {"precision", "P", "fp32 (default) or bf16 autocast"},
        {"teacher-dtype", "P", "teacher weights in memory: fp32 (default) or bf16"},
        {"grad-checkpoint", nullptr, "recompute activations in the backward pass"},
        {"log-every", "N", "progress line every N steps (default 10)"},
        {"eval-every", "N", "held-out KL every N steps (default: before and after only)"},
        {"save-every", "N", "also write OUT-stepN checkpoints every N steps"},
    };
    return options;
}

// The recipe runs in a process group of its own, out of reach of the terminal's Ctrl-C: an interrupt or a
// termination of this command cancels the job instead, which stops the recipe's group and removes its partial output.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

extern "C" void interruptRecovery(int) { g_interrupted.store(true); }

int runRecover(const Arguments& args)
{
    pipeline::RecoveryRequest request;
    request.teacher = args.value("teacher") ? std::filesystem::path(*args.value("teacher")) : demoModelPath();
    const auto student = args.value("student");
    const auto out = args.value("out");
    if (!student)
        throw UsageError{"--student DIR (the MLA export to recover) is required"};
    if (!out)
        throw UsageError{"--out DIR is required"};
    request.student = *student;
    request.out = *out;
    request.force = args.has("force");
    request.python = args.valueOr("python", "");
    for (const OptionSpec& o : recipeOptions())
        if (args.has(o.name))
            request.recipeOptions.emplace_back(o.name, o.valueName ? *args.value(o.name) : std::string());

    if (args.has("print-command")) {
        std::cout << shellCommandLine(pipeline::recoveryCommand(request)) << "\n";
        return 0;
    }

    // The recipe's own lines, as it prints them (on stderr, so that --json keeps stdout to one object).
    const bool quiet = args.has("quiet") || args.has("json");
    std::mutex printing;
    std::string lastStage;
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
        std::signal(sig, interruptRecovery);
    const JobControl job(&g_interrupted, [&](double, const std::string& stage) {
        if (quiet || stage == lastStage)
            return;
        std::lock_guard<std::mutex> lock(printing);
        lastStage = stage;
        std::cerr << stage << "\n";
    });
    const pipeline::RecoveryOutcome outcome = pipeline::recover(request, ExecutionContext(nullptr, job));

    const nlohmann::json& s = outcome.summary;
    if (args.has("json")) {
        nlohmann::ordered_json j;
        j["out"] = request.out.string();
        for (const char* key : {"kl_before", "kl_after", "ppl_before", "ppl_after", "reference_ppl", "top1_before",
                                "top1_after", "tokens", "steps", "train_sequences", "eval_sequences"})
            if (s.contains(key))
                j[key] = s[key];
        j["teacher_written_first"] = outcome.teacherWrittenFirst;
        j["torch"] = outcome.torchVersion;
        j["command"] = shellCommandLine(outcome.command);
        j["seconds"] = outcome.seconds;
        j["recipe"] = s;
        printJson(j);
        return 0;
    }
    std::cout << "recovered " << request.out.string() << ": held-out KL " << s.value("kl_before", 0.0) << " -> "
              << s.value("kl_after", 0.0) << " nats/token, perplexity " << s.value("ppl_before", 0.0) << " -> "
              << s.value("ppl_after", 0.0) << " (original " << s.value("reference_ppl", 0.0) << "), "
              << s.value("tokens", 0LL) << " training tokens, " << outcome.seconds << " s\n"
              << "check it: mla-workbench-cli eval " << request.out.string() << " --reference "
              << request.teacher.string() << "\n";
    return 0;
}

std::vector<OptionSpec> allOptions()
{
    std::vector<OptionSpec> options = {
        {"teacher", "MODEL", "the original model (a Hugging Face folder, llama2.c .bin, .gguf or .safetensors; default: the demo)"},
        {"student", "DIR", "the converted model to recover (an MLA export folder)"},
        {"out", "DIR", "where the recovered model goes (new or empty)"},
        {"python", "PROGRAM", "the Python with PyTorch to run the recipe (default: $MLA_PYTHON, else python3)"},
        {"print-command", nullptr, "only print the recipe's command line, to run it elsewhere (torchrun on GPUs)"},
        forceOption("replace DIR when it holds an earlier output of this tool or the recipe"),
        {"quiet", nullptr, "no progress lines"},
        jsonOption(),
    };
    for (const OptionSpec& o : recipeOptions())
        options.push_back(o);
    return options;
}

} // namespace

CommandSpec recoverCommand()
{
    return {"recover",
            "--student DIR --out DIR --steps N (--ids FILE | --sample N) [--teacher MODEL] [recipe options] [--json]",
            "recover a converted model by distillation from the original (PyTorch)",
            "Runs the distillation recipe every export carries (STUDENT/recovery/distill.py, docs/recovery.md) with a "
            "local Python that has PyTorch (Debian: python3-torch): KL(teacher || student) on the teacher's logits, "
            "AdamW with a cosine schedule, training the converted attention (or --train all). A teacher that is not a "
            "Hugging Face folder is first written as one, unchanged. Progress lines come from the recipe; the "
            "recovered model is an export folder (recovery recorded in README.md and recovery.json) that every "
            "command here opens. For bigger models, --print-command gives the command to run on a GPU machine, "
            "where `torchrun --nproc_per_node N` runs the same recipe with DDP or FSDP.",
            allOptions(), 0, runRecover};
}

} // namespace mla::cli
