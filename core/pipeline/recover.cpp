#include "pipeline/recover.h"

#include "conversion/pytorch_export.h"
#include "pipeline/convert.h"
#include "pipeline/open_model.h"
#include "util/child_process.h"
#include "util/error.h"
#include "util/output_safety.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <system_error>

#include <stdlib.h>

namespace mla::pipeline {
namespace {

namespace fs = std::filesystem;

// A private temporary folder, removed with everything in it when this goes out of scope.
class TemporaryFolder {
public:
    explicit TemporaryFolder(const std::string& prefix)
    {
        std::string pattern = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
        if (!::mkdtemp(pattern.data()))
            throw Error(fs::temp_directory_path(), "cannot create a temporary folder");
        m_path = pattern;
    }
    ~TemporaryFolder()
    {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    TemporaryFolder(const TemporaryFolder&) = delete;
    TemporaryFolder& operator=(const TemporaryFolder&) = delete;
    const fs::path& path() const { return m_path; }

private:
    fs::path m_path;
};

bool isHuggingFaceFolder(const fs::path& p)
{
    std::error_code ec;
    return fs::is_directory(p, ec) && fs::is_regular_file(p / "config.json", ec);
}

// The Pythons to try, in order: the one asked for, else $MLA_PYTHON, else python3 on PATH and then the system's own
// (/usr/bin/python3, where Debian's python3-torch lives, when PATH starts with a pyenv or venv that lacks it).
std::vector<std::string> pythonCandidates(const RecoveryRequest& request)
{
    if (!request.python.empty())
        return {request.python};
    if (const char* env = std::getenv("MLA_PYTHON"); env && *env)
        return {env};
    return {"python3", "/usr/bin/python3"};
}

fs::path studentRecipe(const fs::path& student) { return student / "recovery" / "distill.py"; }

void checkOptions(const RecoveryRequest& request)
{
    const auto& known = recipeOptionNames();
    for (const auto& [name, value] : request.recipeOptions) {
        auto it = std::find_if(known.begin(), known.end(), [&](const auto& k) { return k.first == name; });
        if (it == known.end())
            throw Error("recovery: unknown recipe option --" + name);
        if (it->second && value.empty())
            throw Error("recovery: --" + name + " needs a value");
        if (!it->second && !value.empty())
            throw Error("recovery: --" + name + " takes no value");
    }
    auto number = [&](const std::string& name, double min, bool integer) {
        for (const auto& [n, v] : request.recipeOptions) {
            if (n != name)
                continue;
            char* end = nullptr;
            errno = 0;
            const double x = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end != '\0' || errno != 0 || !std::isfinite(x) || x < min
                || (integer && x != std::floor(x)))
                throw Error("recovery: --" + name + " must be " + (integer ? "an integer" : "a number") + " >= "
                            + std::to_string(static_cast<long long>(min)) + ", not '" + v + "'");
        }
    };
    number("steps", 1, true);
    number("batch", 1, true);
    number("grad-accum", 1, true);
    number("seq-len", 2, true);
    number("sample", 1, true);
    number("eval-sequences", 1, true);
    number("seed", 0, true);
    number("warmup", 0, true);
    number("lr", 0, false);
    number("lm-weight", 0, false);
    bool steps = false, data = false;
    for (const auto& [n, v] : request.recipeOptions) {
        steps = steps || n == "steps";
        data = data || n == "ids" || n == "sample" || n == "text";
        if ((n == "ids" || n == "eval-ids" || n == "text") && !fs::is_regular_file(v))
            throw Error(fs::path(v), "not a readable file (recovery --" + n + ")");
    }
    if (!steps)
        throw Error("recovery: the number of steps is required (--steps N)");
    if (!data)
        throw Error("recovery: training data is required (--ids FILE, --sample N, or --text FILE)");
}

// "step 12/100 loss ..." -> 12 / 100
std::optional<double> stepFraction(const std::string& line)
{
    static const std::regex step(R"(^step (\d+)/(\d+) )");
    std::smatch m;
    if (!std::regex_search(line, m, step))
        return std::nullopt;
    const double total = std::stod(m[2].str());
    return total > 0 ? std::optional<double>(std::stod(m[1].str()) / total) : std::nullopt;
}

// The last `count` non-empty lines of `text`.
std::string lastLines(const std::string& text, std::size_t count)
{
    std::vector<std::string> lines;
    std::size_t begin = 0;
    while (begin < text.size()) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string::npos)
            end = text.size();
        if (end > begin)
            lines.push_back(text.substr(begin, end - begin));
        begin = end + 1;
    }
    std::string out;
    for (std::size_t i = lines.size() > count ? lines.size() - count : 0; i < lines.size(); ++i)
        out += (out.empty() ? "" : "\n") + lines[i];
    return out;
}

// Where the recipe wrote the path of a temporary teacher (README.md, recovery.json), the path the user gave.
void replaceInFile(const fs::path& file, const std::string& from, const std::string& to)
{
    std::ifstream in(file, std::ios::binary);
    if (!in)
        return;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    bool changed = false;
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
        changed = true;
    }
    if (!changed)
        return;
    const fs::path staging = file.string() + ".partial";
    {
        std::ofstream out(staging, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out)
            throw Error(staging, "cannot write");
    }
    fs::rename(staging, file);
}

// The staging folders the recipe makes beside `out` (".NAME.partial-*"), to remove after a cancel.
std::set<fs::path> recipeStagings(const fs::path& out)
{
    std::set<fs::path> found;
    std::error_code ec;
    const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    const std::string prefix = "." + out.filename().string() + ".partial-";
    for (const auto& entry : fs::directory_iterator(parent, ec))
        if (entry.path().filename().string().rfind(prefix, 0) == 0)
            found.insert(entry.path());
    return found;
}

} // namespace

const std::vector<std::pair<std::string, bool>>& recipeOptionNames()
{
    static const std::vector<std::pair<std::string, bool>> names = {
        {"ids", true},          {"text", true},        {"sample", true},     {"eval-ids", true},
        {"eval-sequences", true}, {"steps", true},     {"batch", true},      {"grad-accum", true},
        {"seq-len", true},      {"lr", true},          {"min-lr-ratio", true}, {"warmup", true},
        {"weight-decay", true}, {"clip", true},        {"train", true},      {"lm-weight", true},
        {"temperature", true},  {"seed", true},        {"device", true},     {"precision", true},
        {"teacher-dtype", true}, {"grad-checkpoint", false}, {"log-every", true}, {"eval-every", true},
        {"save-every", true},
    };
    return names;
}

std::vector<std::string> recoveryCommand(const RecoveryRequest& request)
{
    std::vector<std::string> argv = {pythonCandidates(request).front(), studentRecipe(request.student).string(), "--teacher",
                                     request.teacher.string(), "--student", request.student.string(), "--out",
                                     request.out.string()};
    for (const auto& [name, value] : request.recipeOptions) {
        argv.push_back("--" + name);
        if (!value.empty())
            argv.push_back(value);
    }
    if (request.force)
        argv.push_back("--force");
    return argv;
}

RecoveryOutcome recover(const RecoveryRequest& request, const ExecutionContext& context)
{
    const auto started = std::chrono::steady_clock::now();
    const JobControl& job = context.job();

    // Everything checkable comes first: no teacher is written and no Python started for a request that must fail.
    if (!isHuggingFaceFolder(request.student))
        throw Error(request.student, "not an exported model folder (no config.json): recovery trains an MLA export");
    std::error_code ec;
    if (!fs::exists(request.teacher, ec))
        throw Error(request.teacher, "no such file or folder (the recovery's teacher)");
    checkOptions(request);
    OutputOptions output;
    output.force = request.force;
    output.inputs = {request.teacher, request.student};
    for (const auto& [n, v] : request.recipeOptions)
        if (n == "ids" || n == "eval-ids" || n == "text")
            output.inputs.push_back(v);
    requireOutputFolder(request.out, output);

    RecoveryOutcome outcome;
    std::string python;
    std::string tried;
    for (const std::string& candidate : pythonCandidates(request)) {
        ChildProcessRequest probe;
        probe.argv = {candidate, "-c", "import torch; print(torch.__version__)"};
        try {
            const ChildProcessResult r = runChildProcess(probe, {}, job);
            if (r.exitCode == 0 && !r.lastLine.empty()) {
                python = candidate;
                outcome.torchVersion = r.lastLine;
                break;
            }
            tried += (tried.empty() ? "" : ", ") + candidate + " (no PyTorch)";
        } catch (const Error&) {
            tried += (tried.empty() ? "" : ", ") + candidate + " (not found)";
        }
    }
    if (python.empty())
        throw Error("recovery: no Python with PyTorch (tried " + tried + "; Debian: apt install python3-torch, or "
                    "--python PROGRAM). To run the recipe on another machine: "
                    + shellCommandLine(recoveryCommand(request)));

    // The recipe's copy in the student, else the one built into this program (with the modeling file beside it).
    std::optional<TemporaryFolder> recipeFolder;
    fs::path recipe = studentRecipe(request.student);
    if (!fs::is_regular_file(recipe, ec) || !fs::is_regular_file(request.student / "modeling_mla.py", ec)) {
        recipeFolder.emplace("mla-recipe-");
        for (const auto& [name, content] : pytorchExportFiles()) {
            const fs::path target = recipeFolder->path() / name;
            fs::create_directories(target.parent_path());
            std::ofstream f(target, std::ios::binary);
            f << content;
            if (!f)
                throw Error(target, "cannot write the recovery recipe");
        }
        recipe = recipeFolder->path() / "recovery" / "distill.py";
    }

    // A teacher in another format is written as a Hugging Face folder first: the original unchanged (every RoPE pair
    // kept, no latent), which the recipe's modeling file loads as the original architecture.
    std::optional<TemporaryFolder> teacherFolder;
    fs::path teacher = request.teacher;
    double trainBegin = 0.0;
    if (!isHuggingFaceFolder(request.teacher)) {
        teacherFolder.emplace("mla-teacher-");
        const ExecutionContext writing(context.sharedBackend(),
                                       job.slice(0.0, 0.05).withStage("writing the teacher as a Hugging Face folder"));
        OpenRequest open;
        open.model = request.teacher;
        const OpenedModel original = openModel(open, writing.slice(0.0, 0.2));
        Settings unchanged;
        unchanged.conversion.strategy = RopeStrategy::High;
        unchanged.conversion.ropePairs = original.model->config.headDim / 2;
        unchanged.conversion.method = LatentMethod::None;
        ExportRequest write;
        write.folder = teacherFolder->path() / "teacher";
        convertToFolder(original, nullptr, unchanged, write, std::nullopt, writing.slice(0.2, 1.0));
        teacher = write.folder;
        outcome.teacherWrittenFirst = true;
        trainBegin = 0.05;
    }

    RecoveryRequest run = request;
    run.teacher = teacher;
    ChildProcessRequest child;
    child.argv = recoveryCommand(run);
    child.argv[0] = python;
    child.argv[1] = recipe.string();
    if (!request.force && fs::is_directory(request.out, ec) && fs::is_empty(request.out, ec))
        child.argv.push_back("--force"); // an empty folder is allowed by our policy; the recipe would refuse it
    child.setEnvironment = {{"PYTHONUNBUFFERED", "1"}, {"PYTHONDONTWRITEBYTECODE", "1"}};
    outcome.command = child.argv;

    const JobControl training = job.slice(trainBegin, 1.0);
    training.progress(0.0, "starting the recovery recipe (PyTorch " + outcome.torchVersion + ")");
    const std::set<fs::path> stagingsBefore = recipeStagings(request.out);
    ChildProcessResult result;
    try {
        result = runChildProcess(
            child,
            [&](const std::string& line) {
                if (auto f = stepFraction(line))
                    training.progress(0.05 + 0.9 * *f, line);
                else if (line.rfind('{', 0) != 0)
                    training.progress(line.rfind("held-out after", 0) == 0 ? 0.95 : 0.02, line);
            },
            job);
    } catch (const Cancelled&) {
        for (const fs::path& p : recipeStagings(request.out))
            if (!stagingsBefore.count(p))
                fs::remove_all(p, ec);
        throw;
    }
    if (result.signal != 0)
        throw Error(recipe, "the recovery recipe was stopped by signal " + std::to_string(result.signal) + "\n"
                                + lastLines(result.errorTail, 8));
    if (result.exitCode != 0)
        throw Error(recipe, "the recovery recipe failed (exit " + std::to_string(result.exitCode) + "):\n"
                                + lastLines(result.errorTail, 8));
    try {
        outcome.summary = nlohmann::json::parse(result.lastLine);
    } catch (const nlohmann::json::exception&) {
        throw Error(recipe, "the recovery recipe ended without its summary line (got: " + result.lastLine.substr(0, 200) + ")");
    }
    if (!outcome.summary.is_object() || !outcome.summary.contains("kl_after") || !fs::is_directory(request.out, ec))
        throw Error(recipe, "the recovery recipe's summary has no kl_after, or it wrote no folder at " + request.out.string());
    if (outcome.teacherWrittenFirst) { // the temporary teacher is gone: name the model the user gave
        const std::string temporary = fs::absolute(teacher).string(), given = fs::absolute(request.teacher).string();
        outcome.summary["teacher"] = given;
        replaceInFile(request.out / "README.md", temporary, given);
        replaceInFile(request.out / "recovery.json", temporary, given);
    }
    writeOutputMarker(request.out);
    job.progress(1.0, "recovered");
    outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return outcome;
}

} // namespace mla::pipeline
