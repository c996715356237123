// CUDA backend benchmark (docs/benchmarks.md, "CUDA backend"; run on a GPU machine by tests/benchmarks/cuda_device_run.sh).
//
//   cuda_bench decompositions MODEL [--layer L] [--pairs P] [--latent D] [--repeat R] [--dump DIR] [--cpu]
//       The per-layer decompositions of a conversion on one layer's real matrices (joint [W_k_nope; W_v], key, value
//       with P kept pairs per head): the three spectra, the rank-D factors of the joint matrix and the whole
//       convertAttention, on the GPU (and with --cpu on the CPU). --dump writes the three matrices as .npy so that
//       tests/benchmarks/cuda_torch_baseline.py times PyTorch on the same matrices.
//   cuda_bench forward MODEL [--seqs N] [--len T] [--repeat R] [--no-gram]
//       The calibration forward (every layer over N random sequences of T tokens, with the statistics and the input
//       Gram the analysis accumulates): tokens per second, first pass (weights uploaded) and later passes.
// Prints one JSON object on stdout.
#include "analysis/key_value_split.h"
#include "analysis/layer_statistics.h"
#include "backend/compute_backend.h"
#include "conversion/converter.h"
#include "conversion/layer_converter.h"
#include "model/model_loader.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>

namespace fs = std::filesystem;
using namespace mla;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

struct Options {
    std::map<std::string, std::string> values;
    std::string get(const std::string& k, const std::string& fallback) const
    {
        auto it = values.find(k);
        return it == values.end() ? fallback : it->second;
    }
    long long integer(const std::string& k, long long fallback) const { return std::stoll(get(k, std::to_string(fallback))); }
    bool has(const std::string& k) const { return values.count(k) > 0; }
};

void writeNpy(const fs::path& file, const MatrixRM& m)
{
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                         std::to_string(m.cols()) + "), }";
    const std::size_t total = 10 + header.size() + 1;
    header += std::string((64 - total % 64) % 64, ' ') + "\n";
    std::ofstream out(file, std::ios::binary);
    const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    out.write(magic, 8);
    const std::uint16_t length = static_cast<std::uint16_t>(header.size());
    out.write(reinterpret_cast<const char*>(&length), 2);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(float)));
}

// Best of `repeat` timed runs after one warm-up.
template <typename F>
double timeBest(int repeat, F f)
{
    f();
    double best = 1e300;
    for (int i = 0; i < repeat; ++i) {
        const auto t0 = Clock::now();
        f();
        best = std::min(best, seconds(t0));
    }
    return best;
}

int decompositions(const fs::path& modelPath, const Options& o)
{
    const Model model = loadModel(modelPath);
    const ModelConfig& c = model.config;
    const std::int64_t layer = o.integer("layer", 0);
    const int repeat = static_cast<int>(o.integer("repeat", 3));
    ConversionSettings settings;
    settings.strategy = RopeStrategy::High;
    settings.ropePairs = o.integer("pairs", std::max<std::int64_t>(1, c.headDim / 16));
    settings.latentDim = o.integer("latent", c.kvDim() / 4);
    settings.method = LatentMethod::Joint;
    const ConversionPlan plan = planConversion(c, settings, selectPairs(c, settings, nullptr));
    const MlaLayerConfig& target = plan.converted.mla->layers[static_cast<std::size_t>(layer)];
    const LayerWeights& w = model.layers[static_cast<std::size_t>(layer)];
    const KeyValueSplit split = splitKeyValue(c, w, target.keptPairs);
    const MatrixRM joint = jointKeyValue(split);
    nlohmann::ordered_json j;
    j["model"] = modelPath.string();
    j["layer"] = layer;
    j["joint"] = {joint.rows(), joint.cols()};
    j["key"] = {split.kNope.rows(), split.kNope.cols()};
    j["value"] = {split.v.rows(), split.v.cols()};
    j["latent"] = target.latentK;
    if (o.has("dump")) {
        const fs::path dir = o.get("dump", ".");
        fs::create_directories(dir);
        writeNpy(dir / "joint.npy", joint);
        writeNpy(dir / "key.npy", split.kNope);
        writeNpy(dir / "value.npy", split.v);
    }
    auto measure = [&](const std::shared_ptr<const ComputeBackend>& backend, int reps) {
        const ComputeBackend& b = *backend;
        nlohmann::ordered_json r;
        r["device"] = b.device().label();
        r["spectra_joint_key_value_s"] = timeBest(reps, [&] { b.spectra({&joint, &split.kNope, &split.v}, nullptr); });
        r["singular_values_joint_s"] = timeBest(reps, [&] { b.singularValues(joint); });
        r["low_rank_factors_joint_s"] = timeBest(reps, [&] { b.lowRankFactors(joint, target.latentK); });
        r["convert_attention_layer_s"] = timeBest(reps, [&] { convertAttention(b, c, w, target, settings); });
        return r;
    };
    std::string why;
    const auto cuda = cudaBackend(0, &why);
    if (!cuda)
        throw Error("no CUDA backend: " + why);
    j["cuda"] = measure(cuda, repeat);
    if (o.has("cpu"))
        j["cpu"] = measure(cpuBackendShared(), 1);
    std::cout << j.dump(2) << std::endl;
    return 0;
}

int forward(const fs::path& modelPath, const Options& o)
{
    std::string why;
    const auto cuda = cudaBackend(0, &why);
    if (!cuda)
        throw Error("no CUDA backend: " + why);
    const Model model = loadModel(modelPath);
    const ModelConfig& c = model.config;
    const std::int64_t count = o.integer("seqs", 16), length = o.integer("len", 256);
    const int repeat = static_cast<int>(o.integer("repeat", 2));
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> id(3, static_cast<int>(c.vocab) - 1);
    TokenSequences sequences(static_cast<std::size_t>(count));
    for (auto& s : sequences) {
        s.push_back(c.bosId.value_or(1));
        while (static_cast<std::int64_t>(s.size()) < length)
            s.push_back(id(rng));
    }
    StatisticsOptions so;
    so.inputGram = !o.has("no-gram");
    const Transformer t(model, MlaForm::Expanded);
    const char* precision = std::getenv("MLA_CUDA_PRECISION");
    nlohmann::ordered_json j;
    j["model"] = modelPath.string();
    j["device"] = cuda->device().label();
    j["precision"] = precision ? precision : "fp32";
    j["sequences"] = count;
    j["length"] = length;
    j["tokens"] = count * length;
    j["layers"] = c.layers;
    j["input_gram"] = so.inputGram;
    nlohmann::ordered_json passes = nlohmann::ordered_json::array();
    for (int r = 0; r < 1 + repeat; ++r) {
        const auto t0 = Clock::now();
        auto runner = cuda->layerRunner(t, sequences);
        const double setup = seconds(t0);
        for (std::int64_t l = 0; l < c.layers; ++l) {
            LayerStatistics stats = emptyStatistics(c, so);
            runner->runLayer(l, so, &stats);
        }
        const double total = seconds(t0);
        passes.push_back({{"seconds", total}, {"setup_seconds", setup},
                          {"tokens_per_second", static_cast<double>(count * length) / total}});
    }
    j["passes"] = passes; // the first includes uploading the weights from host memory
    std::cout << j.dump(2) << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: cuda_bench decompositions|forward MODEL [options]\n");
        return 2;
    }
    Options o;
    for (int i = 3; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0)
            continue;
        a = a.substr(2);
        if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
            o.values[a] = argv[++i];
        else
            o.values[a] = "";
    }
    try {
        const std::string mode = argv[1];
        if (mode == "decompositions")
            return decompositions(argv[2], o);
        if (mode == "forward")
            return forward(argv[2], o);
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cuda_bench: %s\n", e.what());
        return 1;
    }
}
