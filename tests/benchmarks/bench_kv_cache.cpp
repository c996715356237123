// Decode speed at a long context with the KV cache in each format, as ratios against BF16 measured in the same run
// (docs/benchmarks.md, "Quantised KV cache"). A SmolLM-135M-shaped synthetic checkpoint (BF16 weights) converted to
// MLA with the paper's defaults (4 RoPE pairs per head, joint latent for a 75% saving), and the original for
// comparison. The cache is filled to the context with random rows written through the cache's own encoder (decode
// cost does not depend on the values), then:
//   attention  one layer's attention over the cache for one new token (attendToCache), best of many: the part of a
//              decode step that reads the cache, so the part a smaller cache can speed up
//   decode     whole decode steps (every layer, weights streamed too) at that context, best of several runs
// Figures, not pass/fail. Usage: bench_kv_cache [--context N] [--tokens N] [--repeats N] [--cache-dir DIR] [--quick]
#include "backend/compute_backend.h"
#include "conversion/converter.h"
#include "engine/cache_attention.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "tensor/kernels.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#ifndef MLA_BENCH_CACHE_DIR
#define MLA_BENCH_CACHE_DIR "bench-cache"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using namespace mla;

struct Options {
    std::int64_t context = 4096;
    int tokens = 16;
    int repeats = 3;
    int attentionRepeats = 50;
    std::filesystem::path cacheDir = MLA_BENCH_CACHE_DIR;
};

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

std::filesystem::path ensureCheckpoint(const Options& o)
{
    const std::filesystem::path folder = o.cacheDir / "smollm-135m-bf16";
    if (std::filesystem::exists(folder / "config.json") && std::filesystem::exists(folder / "model.safetensors"))
        return folder;
    std::filesystem::create_directories(o.cacheDir);
    std::printf("writing %s ...\n", folder.c_str());
    std::fflush(stdout);
    SyntheticOptions options;
    options.dtype = DType::BF16;
    options.seed = 1;
    writeSyntheticCheckpoint(syntheticShape("smollm-135m"), options, folder);
    return folder;
}

// Fills every buffer of every layer with `n` random rows (unit normal, the scale of normalised activations).
void fillCache(const ModelConfig& c, KvCache& cache, std::int64_t n, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (std::int64_t l = 0; l < c.layers; ++l) {
        for (const CacheBuffer& b : layerCacheBuffers(c, l, cache.form())) {
            MatrixRM rows(n, b.width);
            for (Eigen::Index i = 0; i < rows.size(); ++i)
                rows.data()[i] = normal(rng);
            cache.layer(l).buffer(b.role).store(0, rows);
        }
    }
    cache.setLength(n);
}

struct Result {
    std::string format;
    double bytesPerToken = 0.0;   // the whole cache, all layers
    double attentionUs = 0.0;     // one layer, one token
    double attentionGBs = 0.0;    // that layer's cache bytes / time
    double decodeTokS = 0.0;
};

// One layer's attention for one token at position n, shaped like the model's layer 0.
double attentionMicroseconds(const Transformer& t, const KvCache& cache, std::int64_t n, const Options& o)
{
    const ModelConfig& c = t.config();
    const LayerCache& lc = cache.layer(0);
    std::mt19937_64 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random = [&](std::int64_t cols) {
        MatrixRM m(1, cols);
        for (Eigen::Index i = 0; i < m.size(); ++i)
            m.data()[i] = normal(rng);
        return m;
    };
    AttentionShape shape;
    shape.heads = c.heads;
    shape.group = c.group();
    shape.firstPosition = n - 1;
    shape.tokens = 1;
    shape.scale = 0.125f;
    std::vector<CacheKeyTerm> terms;
    MatrixRM q0, q1;
    CacheValueTerm values;
    if (c.isMla()) {
        const std::int64_t r = lc.ropeKeys.width() / c.kvHeads;
        q0 = random(c.heads * r);
        q1 = random(c.heads * lc.latentK.width());
        terms.push_back({&q0, &lc.ropeKeys, r, false});
        terms.push_back({&q1, &lc.latentK, lc.latentK.width(), true});
        values = {&lc.latentK, lc.latentK.width(), true};
    } else {
        q0 = random(c.qDim());
        terms.push_back({&q0, &lc.keys, c.headDim, false});
        values = {&lc.values, c.headDim, false};
    }
    MatrixRM out;
    attendToCache(shape, terms, values, out); // warm-up
    double best = 1e30;
    for (int r = 0; r < o.attentionRepeats; ++r) {
        const auto start = Clock::now();
        attendToCache(shape, terms, values, out);
        best = std::min(best, secondsSince(start));
    }
    return best * 1e6;
}

double decodeTokensPerSecond(const Transformer& t, const Options& o)
{
    const std::int64_t vocab = t.config().vocab;
    double best = 0.0;
    for (int r = 0; r < o.repeats; ++r) {
        KvCache cache = t.newCache(o.context + o.tokens);
        fillCache(t.config(), cache, o.context, 5);
        int token = 17;
        const auto start = Clock::now();
        for (int i = 0; i < o.tokens; ++i) {
            const MatrixRM logits = t.forward(std::span<const int>(&token, 1), cache, Logits::Last);
            Eigen::Index next = 0;
            logits.row(0).maxCoeff(&next);
            token = static_cast<int>(next % vocab);
        }
        best = std::max(best, o.tokens / secondsSince(start));
    }
    return best;
}

std::vector<Result> measure(const Model& model, const Options& o)
{
    std::vector<Result> results;
    for (const char* name : {"bf16", "f32", "int8", "int4"}) {
        const KvCacheFormat format = kvCacheFormatFromSettings(name, "", 0);
        const Transformer t(model, MlaForm::Absorbed, format);
        Result r;
        r.format = kvCacheFormatName(format);
        KvCache cache = t.newCache(o.context);
        fillCache(model.config, cache, o.context, 3);
        r.bytesPerToken = cache.bytesPerToken();
        r.attentionUs = attentionMicroseconds(t, cache, o.context, o);
        const double layerBytes = static_cast<double>(cache.layer(0).allocatedBytes());
        r.attentionGBs = layerBytes / (r.attentionUs * 1e-6) / 1e9;
        r.decodeTokS = decodeTokensPerSecond(t, o);
        std::printf("  %-22s %8.0f B/token  attention %8.1f us (%5.2f GB/s)  decode %6.2f tok/s\n", r.format.c_str(), r.bytesPerToken,
                    r.attentionUs, r.attentionGBs, r.decodeTokS);
        std::fflush(stdout);
        results.push_back(r);
    }
    return results;
}

void table(const char* title, const std::vector<Result>& rows)
{
    const Result& base = rows.front(); // bf16
    std::printf("\n%s\n\n| cache | KV bytes/token | attention us (1 layer, 1 token) | attention vs bf16 | cache GB/s | decode tok/s | decode vs bf16 |\n",
                title);
    std::printf("|---|---|---|---|---|---|---|\n");
    for (const Result& r : rows)
        std::printf("| %s | %.0f | %.1f | %.2fx | %.2f | %.2f | %.2fx |\n", r.format.c_str(), r.bytesPerToken, r.attentionUs,
                    base.attentionUs / r.attentionUs, r.attentionGBs, r.decodeTokS, r.decodeTokS / base.decodeTokS);
}

void usage()
{
    std::printf("usage: bench_kv_cache [--context N] [--tokens N] [--repeats N] [--cache-dir DIR] [--quick]\n");
}

} // namespace

int main(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--context")
            o.context = std::stoll(value());
        else if (a == "--tokens")
            o.tokens = std::stoi(value());
        else if (a == "--repeats")
            o.repeats = std::stoi(value());
        else if (a == "--cache-dir")
            o.cacheDir = value();
        else if (a == "--quick") {
            o.context = 1024;
            o.tokens = 4;
            o.repeats = 1;
            o.attentionRepeats = 10;
        } else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    try {
        std::printf("bench_kv_cache: kernels %s, %d OpenMP threads, context %lld, %d decode tokens, best of %d\n",
                    kernelInstructionSet(), omp_get_max_threads(), static_cast<long long>(o.context), o.tokens, o.repeats);
        const Model original = loadModel(ensureCheckpoint(o));
        ConversionSettings s;
        s.strategy = RopeStrategy::High;
        s.ropePairs = 4;
        s.targetSaving = 0.75;
        const Model converted = convertModel(cpuBackend(), original, planConversion(original.config, s, selectPairs(original.config, s, nullptr)));
        std::printf("MLA (4 pairs per head, joint latent %lld, 75%% saving):\n",
                    static_cast<long long>(converted.config.mla->layers[0].latentK));
        const std::vector<Result> mla = measure(converted, o);
        std::printf("original (GQA, 3 KV heads of 64):\n");
        const std::vector<Result> plain = measure(original, o);
        table("SmolLM-135M shape converted to MLA, BF16 weights", mla);
        table("SmolLM-135M shape, original attention, BF16 weights", plain);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_kv_cache: %s\n", e.what());
        return 1;
    }
    return 0;
}
