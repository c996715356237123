#include "engine/evaluation.h"

#include "backend/compute_backend.h"
#include "engine/ops.h"
#include "engine/sampler.h"
#include "util/error.h"
#include "util/input_file.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace mla {
namespace {

std::int64_t windowLength(const ModelConfig& c, std::size_t sequenceLength)
{
    std::int64_t w = static_cast<std::int64_t>(sequenceLength);
    if (c.maxPositions > 0)
        w = std::min(w, c.maxPositions);
    return w;
}

// Calls f(window) for consecutive windows of a sequence that fit the model's context.
template <typename F>
void forEachWindow(const ModelConfig& c, const std::vector<int>& sequence, F f)
{
    const std::int64_t w = windowLength(c, sequence.size());
    for (std::size_t begin = 0; begin + 1 < sequence.size(); begin += static_cast<std::size_t>(w)) {
        const std::size_t end = std::min(sequence.size(), begin + static_cast<std::size_t>(w));
        if (end - begin >= 2)
            f(std::span<const int>(sequence.data() + begin, end - begin));
    }
}

std::int64_t countWindows(const ModelConfig& c, const TokenSequences& sequences)
{
    std::int64_t n = 0;
    for (const auto& s : sequences)
        forEachWindow(c, s, [&](std::span<const int>) { ++n; });
    return n;
}

} // namespace

double PerplexityResult::meanNll() const
{
    return tokens > 0 ? nll / static_cast<double>(tokens) : 0.0;
}

double PerplexityResult::ppl() const
{
    return std::exp(meanNll());
}

TokenSequences readIdSequences(const std::filesystem::path& path)
{
    std::istringstream in(readInputFile(path, kMaxTextInputBytes, "token id list"));
    TokenSequences sequences;
    std::string line;
    std::int64_t lineNumber = 0;
    while (std::getline(in, line)) {
        ++lineNumber;
        std::vector<int> ids;
        std::size_t i = 0;
        while (i < line.size()) {
            if (std::isspace(static_cast<unsigned char>(line[i]))) {
                ++i;
                continue;
            }
            std::size_t j = i;
            while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j])))
                ++j;
            const std::string word = line.substr(i, j - i);
            long long value = -1;
            std::size_t used = 0;
            try {
                value = std::stoll(word, &used);
            } catch (...) {
                used = 0;
            }
            if (used != word.size() || value < 0 || value > (1ll << 30))
                throw Error(path, "line " + std::to_string(lineNumber) + ": '" + word + "' is not a token id");
            ids.push_back(static_cast<int>(value));
            i = j;
        }
        if (!ids.empty())
            sequences.push_back(std::move(ids));
    }
    if (sequences.empty())
        throw Error(path, "holds no token ids");
    return sequences;
}

TokenSequences splitIntoSequences(const std::vector<int>& ids, std::int64_t length)
{
    TokenSequences out;
    if (length < 2)
        throw Error("sequence length must be at least 2");
    for (std::size_t begin = 0; begin < ids.size(); begin += static_cast<std::size_t>(length)) {
        const std::size_t end = std::min(ids.size(), begin + static_cast<std::size_t>(length));
        if (end - begin >= 2)
            out.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(begin), ids.begin() + static_cast<std::ptrdiff_t>(end));
    }
    return out;
}

PerplexityResult perplexity(const ComputeBackend& backend, const Transformer& model, const TokenSequences& sequences, const JobControl& job)
{
    const ModelConfig& c = model.config();
    PerplexityResult result;
    const std::int64_t total = countWindows(c, sequences);
    std::int64_t done = 0;
    for (const auto& sequence : sequences) {
        forEachWindow(c, sequence, [&](std::span<const int> window) {
            job.progress(static_cast<double>(done) / static_cast<double>(std::max<std::int64_t>(total, 1)), "perplexity");
            const auto session = backend.decoderSession(model, static_cast<std::int64_t>(window.size()));
            result.kvBytesPerToken = session->kvBytesPerToken();
            const MatrixRM logits = session->forward(window, Logits::All);
            for (std::size_t t = 0; t + 1 < window.size(); ++t) {
                const float* row = logits.row(static_cast<Eigen::Index>(t)).data();
                result.nll += logSumExp(row, logits.cols()) - row[window[t + 1]];
                ++result.tokens;
            }
            ++done;
        });
    }
    if (result.tokens == 0)
        throw Error("no sequence has two or more tokens to evaluate");
    return result;
}

ComparisonResult compareModels(const ComputeBackend& backend, const Transformer& model, const Transformer& reference, const TokenSequences& sequences,
                               const JobControl& job)
{
    if (model.config().vocab != reference.config().vocab)
        throw Error("the model and the reference have different vocabularies (" + std::to_string(model.config().vocab)
                    + " and " + std::to_string(reference.config().vocab) + " ids)");
    ComparisonResult result;
    double klSum = 0.0;
    std::int64_t agree = 0;
    ModelConfig window = model.config();
    if (reference.config().maxPositions > 0 && (window.maxPositions == 0 || reference.config().maxPositions < window.maxPositions))
        window.maxPositions = reference.config().maxPositions;
    const std::int64_t total = countWindows(window, sequences);
    std::int64_t done = 0;
    const std::int64_t vocab = model.config().vocab;
    std::vector<double> logP(static_cast<std::size_t>(vocab));
    for (const auto& sequence : sequences) {
        forEachWindow(window, sequence, [&](std::span<const int> ids) {
            job.progress(static_cast<double>(done) / static_cast<double>(std::max<std::int64_t>(total, 1)), "comparing");
            const auto sessionA = backend.decoderSession(model, static_cast<std::int64_t>(ids.size()));
            const auto sessionB = backend.decoderSession(reference, static_cast<std::int64_t>(ids.size()));
            result.model.kvBytesPerToken = sessionA->kvBytesPerToken();
            result.reference.kvBytesPerToken = sessionB->kvBytesPerToken();
            const MatrixRM a = sessionA->forward(ids, Logits::All);
            const MatrixRM b = sessionB->forward(ids, Logits::All);
            for (std::size_t t = 0; t + 1 < ids.size(); ++t) {
                const float* rowA = a.row(static_cast<Eigen::Index>(t)).data();
                const float* rowB = b.row(static_cast<Eigen::Index>(t)).data();
                const double lseA = logSumExp(rowA, vocab);
                const double lseB = logSumExp(rowB, vocab);
                double kl = 0.0;
                for (std::int64_t v = 0; v < vocab; ++v) {
                    const double lb = rowB[v] - lseB;
                    kl += std::exp(lb) * (lb - (rowA[v] - lseA));
                }
                klSum += std::max(0.0, kl);
                agree += Sampler::argmax(rowA, vocab) == Sampler::argmax(rowB, vocab) ? 1 : 0;
                const int target = ids[t + 1];
                result.model.nll += lseA - rowA[target];
                result.reference.nll += lseB - rowB[target];
                ++result.positions;
            }
            ++done;
        });
    }
    if (result.positions == 0)
        throw Error("no sequence has two or more tokens to evaluate");
    result.model.tokens = result.reference.tokens = result.positions;
    result.kl = klSum / static_cast<double>(result.positions);
    result.top1Agreement = static_cast<double>(agree) / static_cast<double>(result.positions);
    return result;
}

} // namespace mla
