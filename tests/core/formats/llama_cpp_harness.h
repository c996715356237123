#pragma once

// Runs jobs in the real llama.cpp (tests/llama_cpp: node-llama-cpp 3.21.1 pinned by its lock file, installed by
// packaging/install-deps.sh) and our engine's counterparts of what it reports, for the GGUF export checks.

#include "common/test_support.h"

#include "common/model_fixtures.h"
#include "common/sanitizer.h"
#include "engine/transformer.h"
#include "model/model_files.h"
#include "tokenizer/tokenizer.h"

#include <QProcess>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace mla::test {

struct LlamaCppResult {
    std::optional<std::string> skipped; // why llama.cpp could not run (not installed), when it could not
    nlohmann::json output;              // llama_cpp_run.mjs's JSON
};

// Runs one job (see tests/llama_cpp/llama_cpp_run.mjs). A missing installation is reported in `skipped`; anything
// else that goes wrong throws, so the test fails.
inline LlamaCppResult runLlamaCpp(const nlohmann::json& job, const std::filesystem::path& scratch, int timeoutMs = 600000)
{
    const auto jobFile = scratch / "llama_cpp_job.json";
    writeTextFile(jobFile, job.dump());
    QProcess process;
    process.start("bash", {QString::fromStdString((sourceDir() / "llama_cpp" / "run.sh").string()),
                           QString::fromStdString(jobFile.string())});
    if (!process.waitForStarted(30000))
        throw std::runtime_error("cannot start bash for tests/llama_cpp/run.sh");
    if (!process.waitForFinished(timeoutMs)) {
        process.kill();
        throw std::runtime_error("llama.cpp run timed out");
    }
    const std::string err = process.readAllStandardError().toStdString();
    const std::string out = process.readAllStandardOutput().toStdString();
    if (process.exitCode() == 77)
        return {"llama.cpp is not installed: " + err, {}};
    if (process.exitStatus() != QProcess::NormalExit || process.exitCode() != 0)
        throw std::runtime_error("llama.cpp run failed (exit " + std::to_string(process.exitCode()) + "): " + err);
    LlamaCppResult r;
    r.output = nlohmann::json::parse(out);
    for (const auto& run : r.output["runs"]) {
        if (run.contains("error"))
            throw std::runtime_error("llama.cpp failed on " + run["model"].get<std::string>() + ": "
                                     + run["error"].get<std::string>() + "\n" + run.value("log_tail", std::string()));
    }
    return r;
}

// The four shipped real models and the prompts the llama.cpp checks run on them.
struct RealModelPrompts {
    const char* name;
    std::vector<std::string> prompts;
};

inline const std::vector<RealModelPrompts>& llamaCppRealModels()
{
    static const std::vector<RealModelPrompts> models = {
        {"stories260K", {"Once upon a time", "The little dog", "Lily and Tom went to the park."}},
        {"aidreams260K", {"The sea", "I dream of", "Night falls and"}},
        {"poem5L", {"\xE5\xBA\x8A\xE5\x89\x8D\xE6\x98\x8E\xE6\x9C\x88\xE5\x85\x89",   // 床前明月光
                    "\xE6\x98\xA5\xE7\x9C\xA0\xE4\xB8\x8D\xE8\xA7\x89\xE6\x99\x93",   // 春眠不觉晓
                    "\xE7\x99\xBD\xE6\x97\xA5\xE4\xBE\x9D\xE5\xB1\xB1\xE5\xB0\xBD"}}, // 白日依山尽
        {"xs260K", {"Once upon a time", "Tom had a red ball", "One day, a cat"}},
    };
    return models;
}

// The tokenizer file of a real model (xs260K has none beside it: the demo's tok512.bin).
inline std::filesystem::path realModelTokenizerFile(const std::string& name, const Model& model)
{
    if (name == "xs260K")
        return demoDir() / "tok512.bin";
    return *findTokenizerNextTo(model.source);
}

inline int argmax(const float* x, std::int64_t n)
{
    return static_cast<int>(std::max_element(x, x + n) - x);
}

// Our greedy continuation of `prompt`: `count` tokens, never stopping early.
inline std::vector<int> ourGreedy(const Transformer& t, const std::vector<int>& prompt, int count)
{
    KvCache cache = t.newCache(static_cast<std::int64_t>(prompt.size()) + count);
    MatrixRM logits = t.forward(prompt, cache, Logits::Last);
    std::vector<int> out;
    for (int i = 0; i < count; ++i) {
        const int id = argmax(logits.data(), logits.cols());
        out.push_back(id);
        if (i + 1 < count) {
            const int next[1] = {id};
            logits = t.forward(next, cache, Logits::Last);
        }
    }
    return out;
}

// Next-token probabilities at every position of `ids` ([T, vocab]), softmax in double.
inline MatrixRM ourProbabilities(const Transformer& t, const std::vector<int>& ids)
{
    KvCache cache = t.newCache(static_cast<std::int64_t>(ids.size()));
    MatrixRM logits = t.forward(ids, cache, Logits::All);
    for (Eigen::Index r = 0; r < logits.rows(); ++r) {
        const double m = logits.row(r).maxCoeff();
        double sum = 0.0;
        for (Eigen::Index c = 0; c < logits.cols(); ++c)
            sum += std::exp(static_cast<double>(logits(r, c)) - m);
        for (Eigen::Index c = 0; c < logits.cols(); ++c)
            logits(r, c) = static_cast<float>(std::exp(static_cast<double>(logits(r, c)) - m) / sum);
    }
    return logits;
}

// Largest |p_ours - p_llama.cpp| over positions and vocabulary, from a "score" result with "full": true.
inline double maxProbabilityDifference(const MatrixRM& ours, const nlohmann::json& theirs)
{
    double worst = 0.0;
    for (std::size_t pos = 0; pos < theirs.size(); ++pos) {
        const auto& full = theirs[pos]["full"];
        for (std::size_t id = 0; id < full.size(); ++id)
            worst = std::max(worst, std::fabs(static_cast<double>(ours(static_cast<Eigen::Index>(pos), static_cast<Eigen::Index>(id)))
                                              - full[id].get<double>()));
    }
    return worst;
}

} // namespace mla::test
