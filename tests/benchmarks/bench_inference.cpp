// Inference speed on a SmolLM-135M-shaped synthetic checkpoint (F32 and BF16 weights): decode and prefill tokens/s,
// and decode's weight traffic as a fraction of the machine's read bandwidth measured in the same run.
//
// Decode of one token is a chain of matrix-vector products over every weight matrix, so it is bound by memory: the
// figure that matters is (weight bytes streamed per token x tokens/s) / (read bandwidth). The reference bandwidth
// is streamingSum (vectorised sum, all threads) over a buffer far larger than the caches, best of several runs.
// Prefill runs the same weights over many tokens at once (GEMMs), so it should be far faster per token.
//
// Figures, not pass/fail. Usage: bench_inference [--quick] [--cache-dir DIR] [--decode-tokens N] [--repeats N]
// Set OMP_PROC_BIND=close (tests/benchmarks/run_inference.sh does) to keep each thread on its core.
#include "engine/transformer.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "tensor/kernels.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#ifndef MLA_BENCH_CACHE_DIR
#define MLA_BENCH_CACHE_DIR "bench-cache"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Options {
    bool quick = false;
    std::filesystem::path cacheDir = MLA_BENCH_CACHE_DIR;
    int decodeTokens = 128;
    int promptTokens = 8;
    int repeats = 5;
    std::size_t bandwidthBytes = std::size_t(2) << 30;
    bool prefill = true;
    std::vector<mla::DType> dtypes{mla::DType::F32, mla::DType::BF16};
};

struct Bandwidth {
    double streamGBs = 0.0;     // streamingSum, all threads
    double memcpyGBs = 0.0;     // std::memcpy, one thread (bytes copied per second)
    std::size_t bytes = 0;
};

// A page-aligned buffer, first touched by all threads (so the pages are spread as the kernels will read them).
struct Buffer {
    float* data = nullptr;
    std::size_t count = 0;
    explicit Buffer(std::size_t n) : count(n)
    {
        data = static_cast<float*>(std::aligned_alloc(4096, (n * sizeof(float) + 4095) / 4096 * 4096));
        if (!data) {
            std::fprintf(stderr, "out of memory for a %zu-byte buffer\n", n * sizeof(float));
            std::exit(1);
        }
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < static_cast<std::int64_t>(n); ++i)
            data[i] = 1.0f / static_cast<float>(1 + (i & 1023));
    }
    ~Buffer() { std::free(data); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

volatile double g_sink = 0.0;

Bandwidth measureBandwidth(const Options& o)
{
    Bandwidth b;
    b.bytes = o.bandwidthBytes;
    {
        Buffer buffer(o.bandwidthBytes / sizeof(float));
        g_sink = g_sink + mla::streamingSum(buffer.data, buffer.count); // warm-up
        const int runs = o.quick ? 3 : 7;
        for (int r = 0; r < runs; ++r) {
            const auto start = Clock::now();
            g_sink = g_sink + mla::streamingSum(buffer.data, buffer.count);
            const double s = secondsSince(start);
            b.streamGBs = std::max(b.streamGBs, static_cast<double>(buffer.count * sizeof(float)) / s / 1e9);
        }
    }
    {
        const std::size_t n = std::min<std::size_t>(o.bandwidthBytes / 2, std::size_t(512) << 20) / sizeof(float);
        Buffer src(n), dst(n);
        std::memcpy(dst.data, src.data, n * sizeof(float));
        for (int r = 0; r < 3; ++r) {
            const auto start = Clock::now();
            std::memcpy(dst.data, src.data, n * sizeof(float));
            const double s = secondsSince(start);
            g_sink = g_sink + dst.data[n / 2];
            b.memcpyGBs = std::max(b.memcpyGBs, static_cast<double>(n * sizeof(float)) / s / 1e9);
        }
    }
    return b;
}

std::filesystem::path ensureCheckpoint(const Options& o, mla::DType dtype)
{
    const std::string name = std::string("smollm-135m-") + (dtype == mla::DType::F32 ? "f32" : "bf16");
    const std::filesystem::path folder = o.cacheDir / name;
    if (std::filesystem::exists(folder / "config.json") && std::filesystem::exists(folder / "model.safetensors"))
        return folder;
    std::filesystem::create_directories(o.cacheDir);
    std::printf("writing %s ...\n", folder.c_str());
    std::fflush(stdout);
    mla::SyntheticOptions options;
    options.dtype = dtype;
    options.seed = 1;
    mla::writeSyntheticCheckpoint(mla::syntheticShape("smollm-135m"), options, folder);
    return folder;
}

// Bytes the decode of one token reads from the weights: every matrix of every layer once, the norm vectors, the
// output head once (with tied embeddings it is the embedding matrix, which Model::weightBytes counts once) and one
// embedding row for the token lookup. The KV cache (kept in float32, a few MB at these lengths) is not counted.
std::int64_t decodeWeightBytes(const mla::Model& m)
{
    std::int64_t n = m.weightBytes();
    if (!m.config.tieEmbeddings)
        n -= static_cast<std::int64_t>(m.embedding.bytes()); // untied: weightBytes has both; the embedding is only looked up
    n += static_cast<std::int64_t>(m.embedding.cols() * static_cast<std::int64_t>(mla::dtypeSize(m.embedding.dtype())));
    return n;
}

int argmax(const mla::MatrixRM& logits)
{
    Eigen::Index i = 0;
    logits.row(logits.rows() - 1).maxCoeff(&i);
    return static_cast<int>(i);
}

struct DecodeResult {
    double tokensPerSecond = 0.0;
    double kvBytesPerToken = 0.0;
};

DecodeResult measureDecode(const mla::Transformer& t, const Options& o)
{
    const std::int64_t vocab = t.config().vocab;
    std::vector<int> prompt;
    for (int i = 0; i < o.promptTokens; ++i)
        prompt.push_back(static_cast<int>((1000 + 7919 * i) % vocab));
    DecodeResult best;
    for (int r = 0; r < o.repeats + 1; ++r) { // the first run faults the mapped weights in and is not counted
        mla::KvCache cache = t.newCache(o.promptTokens + o.decodeTokens + 1);
        mla::MatrixRM logits = t.forward(prompt, cache, mla::Logits::Last);
        int token = argmax(logits);
        const auto start = Clock::now();
        for (int i = 0; i < o.decodeTokens; ++i) {
            logits = t.forward(std::span<const int>(&token, 1), cache, mla::Logits::Last);
            token = argmax(logits);
        }
        const double s = secondsSince(start);
        if (r > 0)
            best.tokensPerSecond = std::max(best.tokensPerSecond, o.decodeTokens / s);
        best.kvBytesPerToken = cache.bytesPerToken();
    }
    return best;
}

double measurePrefill(const mla::Transformer& t, const Options& o, int tokens)
{
    const std::int64_t vocab = t.config().vocab;
    std::vector<int> prompt;
    for (int i = 0; i < tokens; ++i)
        prompt.push_back(static_cast<int>((17 + 104729LL * i) % vocab));
    double best = 0.0;
    const int repeats = std::max(1, o.quick ? 1 : (tokens >= 512 ? 3 : 5));
    for (int r = 0; r < repeats; ++r) {
        mla::KvCache cache = t.newCache(tokens);
        const auto start = Clock::now();
        mla::MatrixRM logits = t.forward(prompt, cache, mla::Logits::Last);
        const double s = secondsSince(start);
        g_sink = g_sink + logits(0, 0);
        best = std::max(best, tokens / s);
    }
    return best;
}

struct Row {
    std::string dtype;
    double decodeTokS = 0.0;
    std::int64_t bytesPerToken = 0;
    double ratio = 0.0;
    double prefill128 = 0.0;
    double prefill512 = 0.0;
    double kvBytesPerToken = 0.0;
};

void usage()
{
    std::printf("usage: bench_inference [--quick] [--cache-dir DIR] [--decode-tokens N] [--repeats N] [--dtype f32|bf16]"
                " [--no-prefill]\n"
                "  --quick            short smoke run (fewer tokens and repeats, 512 MiB bandwidth buffer)\n"
                "  --cache-dir DIR    where the synthetic checkpoints are written once and reused (default: %s)\n",
                MLA_BENCH_CACHE_DIR);
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
        if (a == "--quick")
            o.quick = true;
        else if (a == "--cache-dir")
            o.cacheDir = value();
        else if (a == "--decode-tokens")
            o.decodeTokens = std::stoi(value());
        else if (a == "--repeats")
            o.repeats = std::stoi(value());
        else if (a == "--no-prefill")
            o.prefill = false;
        else if (a == "--dtype") {
            const auto d = mla::dtypeFromUserName(value());
            if (!d || *d == mla::DType::F16) {
                usage();
                return 2;
            }
            o.dtypes = {*d};
        }
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (o.quick) {
        o.decodeTokens = std::min(o.decodeTokens, 32);
        o.repeats = std::min(o.repeats, 2);
        o.bandwidthBytes = std::size_t(512) << 20;
    }

    try {
        const char* bind = std::getenv("OMP_PROC_BIND");
        std::printf("bench_inference: kernels %s, %d OpenMP threads, OMP_PROC_BIND=%s%s\n", mla::kernelInstructionSet(),
                    omp_get_max_threads(), bind ? bind : "(unset)", o.quick ? ", quick" : "");
        std::vector<std::filesystem::path> folders;
        for (mla::DType d : o.dtypes)
            folders.push_back(ensureCheckpoint(o, d));

        const Bandwidth bw = measureBandwidth(o);
        std::printf("read bandwidth: streamingSum over %zu MiB on %d threads, best of runs: %.2f GB/s; "
                    "single-thread memcpy: %.2f GB/s copied\n",
                    bw.bytes >> 20, omp_get_max_threads(), bw.streamGBs, bw.memcpyGBs);
        std::fflush(stdout);

        std::vector<Row> rows;
        for (std::size_t f = 0; f < folders.size(); ++f) {
            const mla::Model model = mla::loadModel(folders[f]);
            const mla::Transformer t(model);
            Row row;
            row.dtype = o.dtypes[f] == mla::DType::F32 ? "F32" : "BF16";
            row.bytesPerToken = decodeWeightBytes(model);
            const DecodeResult d = measureDecode(t, o);
            row.decodeTokS = d.tokensPerSecond;
            row.kvBytesPerToken = d.kvBytesPerToken;
            row.ratio = row.decodeTokS * static_cast<double>(row.bytesPerToken) / (bw.streamGBs * 1e9);
            row.prefill128 = o.prefill ? measurePrefill(t, o, 128) : 0.0;
            row.prefill512 = o.prefill && !o.quick ? measurePrefill(t, o, 512) : 0.0;
            std::printf("%s: decode %.1f tok/s (%.1f MB/token, %.2f of bandwidth), prefill 128: %.1f tok/s%s\n",
                        row.dtype.c_str(), row.decodeTokS, row.bytesPerToken / 1e6, row.ratio, row.prefill128,
                        o.quick ? "" : (", 512: " + std::to_string(row.prefill512) + " tok/s").c_str());
            std::fflush(stdout);
            rows.push_back(row);
        }

        std::printf("\nSmolLM-135M shape (hidden 576, 30 layers, 9/3 heads, ffn 1536, vocab 49152, tied), synthetic weights\n");
        std::printf("decode: %d tokens after a %d-token prompt, best of %d; prefill: one forward of the whole prompt\n\n",
                    o.decodeTokens, o.promptTokens, o.repeats);
        std::printf("| weights | decode tok/s | weight MB/token | decode GB/s | ratio to bandwidth | prefill 128 tok/s "
                    "| prefill 512 tok/s | prefill/decode per token (512) |\n");
        std::printf("|---|---|---|---|---|---|---|---|\n");
        for (const Row& r : rows) {
            const double pf = o.quick ? r.prefill128 : r.prefill512;
            std::printf("| %s | %.1f | %.1f | %.1f | %.2f | %.0f | %s | %.1fx |\n", r.dtype.c_str(), r.decodeTokS,
                        r.bytesPerToken / 1e6, r.decodeTokS * r.bytesPerToken / 1e9, r.ratio, r.prefill128,
                        o.quick ? "-" : std::to_string(static_cast<long>(r.prefill512 + 0.5)).c_str(), pf / r.decodeTokS);
        }
        std::printf("\nbandwidth reference: %.2f GB/s (streamingSum, %d threads); single-thread memcpy %.2f GB/s\n",
                    bw.streamGBs, omp_get_max_threads(), bw.memcpyGBs);
        std::printf("goal: decode ratio >= 0.85\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_inference: %s\n", e.what());
        return 1;
    }
    return 0;
}
