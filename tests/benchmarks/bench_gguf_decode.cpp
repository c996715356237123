// Our engine's prefill and decode speed on a model file (a GGUF export, typically), measured the way
// tests/llama_cpp/llama_cpp_run.mjs measures llama.cpp's, so tests/benchmarks/bench_llama_cpp.py can put the two
// side by side on the same file: prefill `context` tokens in one forward call, then decode `decode` tokens one at
// a time (greedy), best of `repeats`. Threads: OMP_NUM_THREADS. Prints one JSON object.
//
// Usage: bench_gguf_decode MODEL [--context 256,2048] [--decode 32] [--repeats 3] [--mla-form absorbed|expanded]
#include "engine/transformer.h"
#include "model/model_loader.h"
#include "util/json_util.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

int argmax(const mla::MatrixRM& logits)
{
    return static_cast<int>(std::max_element(logits.data(), logits.data() + logits.cols()) - logits.data());
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_gguf_decode MODEL [--context 256,2048] [--decode 32] [--repeats 3] "
                             "[--mla-form absorbed|expanded]\n");
        return 2;
    }
    const std::string model = argv[1];
    std::vector<int> contexts{256};
    int decode = 32;
    int repeats = 3;
    mla::MlaForm form = mla::MlaForm::Absorbed;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const std::string value = argv[i + 1];
        if (flag == "--context") {
            contexts.clear();
            std::stringstream list(value);
            for (std::string item; std::getline(list, item, ',');)
                contexts.push_back(std::stoi(item));
        } else if (flag == "--decode") {
            decode = std::stoi(value);
        } else if (flag == "--repeats") {
            repeats = std::stoi(value);
        } else if (flag == "--mla-form") {
            form = value == "expanded" ? mla::MlaForm::Expanded : mla::MlaForm::Absorbed;
        } else {
            std::fprintf(stderr, "unknown option %s\n", flag.c_str());
            return 2;
        }
    }
    try {
        const auto loadStart = Clock::now();
        const mla::Transformer transformer(mla::loadModel(model), form);
        const double loadSeconds = secondsSince(loadStart);
        const auto vocab = transformer.config().vocab;
        nlohmann::ordered_json rows = nlohmann::ordered_json::array();
        for (const int context : contexts) {
            // The same prompt ids as llama_cpp_run.mjs's bench: 3 + (i * 7919) % 253.
            std::vector<int> prompt;
            for (int i = 0; i < context; ++i)
                prompt.push_back(static_cast<int>(3 + (static_cast<std::int64_t>(i) * 7919) % std::min<std::int64_t>(253, vocab - 3)));
            double bestPrefill = 0.0;
            double bestDecode = 0.0;
            std::int64_t kvBytes = 0;
            for (int r = 0; r < repeats; ++r) {
                mla::KvCache cache = transformer.newCache(context + decode + 1);
                auto start = Clock::now();
                mla::MatrixRM logits = transformer.forward(prompt, cache, mla::Logits::Last);
                bestPrefill = std::max(bestPrefill, context / secondsSince(start));
                start = Clock::now();
                for (int t = 0; t < decode; ++t) {
                    const int next[1] = {argmax(logits)};
                    logits = transformer.forward(next, cache, mla::Logits::Last);
                }
                bestDecode = std::max(bestDecode, decode / secondsSince(start));
                kvBytes = static_cast<std::int64_t>(cache.allocatedBytes());
            }
            rows.push_back({{"context", context}, {"prefill_tps", bestPrefill}, {"decode_tps", bestDecode},
                            {"kv_cache_bytes", kvBytes}});
        }
        nlohmann::ordered_json out = {{"engine", "mla-workbench"}, {"model", model}, {"threads", omp_get_max_threads()},
                                      {"load_seconds", loadSeconds}, {"bench", rows}};
        std::printf("%s\n", mla::dumpJson(out).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_gguf_decode: %s\n", e.what());
        return 1;
    }
    return 0;
}
