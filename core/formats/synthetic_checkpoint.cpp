#include "formats/synthetic_checkpoint.h"

#include "formats/checkpoint_writer.h"
#include "model/tensor_names.h"
#include "util/error.h"

#include <cmath>

namespace mla {
namespace {

ModelConfig shapeConfig(const char* arch, std::int64_t hidden, std::int64_t ffn, std::int64_t layers, std::int64_t heads,
                        std::int64_t kvHeads, std::int64_t headDim, std::int64_t vocab, std::int64_t ctx, double theta,
                        double eps, bool tie, bool qkvBias, int bos, int eos)
{
    ModelConfig c;
    c.architecture = arch;
    c.hidden = hidden;
    c.ffn = ffn;
    c.layers = layers;
    c.heads = heads;
    c.kvHeads = kvHeads;
    c.headDim = headDim;
    c.vocab = vocab;
    c.maxPositions = ctx;
    c.rope.theta = theta;
    c.rmsEps = eps;
    c.tieEmbeddings = tie;
    c.qkvBias = qkvBias;
    c.bosId = bos;
    c.eosIds = {eos};
    return c;
}

std::vector<SyntheticShape> makeShapes()
{
    std::vector<SyntheticShape> shapes;
    shapes.push_back({"smollm-135m", "SmolLM-135M (Llama, GQA 9:3, head 64)",
                      shapeConfig("llama", 576, 1536, 30, 9, 3, 64, 49152, 2048, 10000.0, 1e-5, true, false, 0, 0)});
    shapes.push_back({"llama2-7b", "Llama-2-7B (MHA 32 heads, head 128)",
                      shapeConfig("llama", 4096, 11008, 32, 32, 32, 128, 32000, 4096, 10000.0, 1e-5, false, false, 1, 2)});
    shapes.push_back({"qwen2.5-0.5b", "Qwen2.5-0.5B (GQA 14:2, q/k/v biases)",
                      shapeConfig("qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, 1000000.0, 1e-6, true, true, 151643, 151643)});
    SyntheticShape llama32{"llama3.2-1b", "Llama-3.2-1B (GQA 32:8, llama3 RoPE scaling)",
                           shapeConfig("llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 500000.0, 1e-5, true, false, 128000, 128001)};
    llama32.config.rope.scaling = RopeScaling::Llama3;
    llama32.config.rope.factor = 32.0;
    llama32.config.rope.lowFreqFactor = 1.0;
    llama32.config.rope.highFreqFactor = 4.0;
    llama32.config.rope.originalMaxPositions = 8192;
    shapes.push_back(llama32);
    SyntheticShape mistral{"mistral-7b", "Mistral-7B-v0.1 (GQA 32:8, sliding window 4096)",
                           shapeConfig("mistral", 4096, 14336, 32, 32, 8, 128, 32000, 32768, 10000.0, 1e-5, false, false, 1, 2)};
    mistral.config.slidingWindow = 4096;
    shapes.push_back(mistral);
    SyntheticShape qwen3{"qwen3-0.6b", "Qwen3-0.6B (GQA 16:8, head 128, q/k norms)",
                         shapeConfig("qwen3", 1024, 3072, 28, 16, 8, 128, 151936, 40960, 1000000.0, 1e-6, true, false, 151643, 151645)};
    qwen3.config.qkNorm = true;
    shapes.push_back(qwen3);
    return shapes;
}

// Fast reproducible uniform noise: splitmix64 per element index, so any tensor can be generated in parallel chunks.
float noise(std::uint64_t seed, std::uint64_t index)
{
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

} // namespace

const std::vector<SyntheticShape>& syntheticShapes()
{
    static const std::vector<SyntheticShape> shapes = makeShapes();
    return shapes;
}

const SyntheticShape& syntheticShape(const std::string& name)
{
    std::string known;
    for (const auto& s : syntheticShapes()) {
        if (s.name == name)
            return s;
        known += (known.empty() ? "" : ", ") + s.name;
    }
    throw Error("unknown shape '" + name + "' (known: " + known + ")");
}

void writeSyntheticCheckpoint(const SyntheticShape& shape, const SyntheticOptions& options, const std::filesystem::path& folder,
                              const JobControl& job)
{
    ModelConfig config = shape.config;
    if (options.layers > 0)
        config.layers = options.layers;
    config.validate(shape.name);

    CheckpointWriter writer(folder, config, configToHuggingFace(config), options.dtype, options.shardBytes, options.output);
    // Uniform on [-a, a] has standard deviation a / sqrt(3); 0.02 is the usual initialiser scale.
    const float amplitude = 0.02f * std::sqrt(3.0f);
    std::uint64_t tensorIndex = 0;
    std::vector<float> values;
    writer.writeTensors(
        [&](const PlannedTensor& planned, const std::string&) {
            std::int64_t count = 1;
            for (auto d : planned.shape)
                count *= d;
            values.resize(static_cast<std::size_t>(count));
            const std::uint64_t seed = options.seed * 1000003ull + tensorIndex++;
            const bool isNorm = planned.role == TensorRole::AttnNorm || planned.role == TensorRole::FfnNorm
                                || planned.role == TensorRole::OutputNorm || planned.role == TensorRole::QNorm
                                || planned.role == TensorRole::KNorm;
            float* out = values.data();
#pragma omp parallel for schedule(static)
            for (std::int64_t i = 0; i < count; ++i) {
                const float n = noise(seed, static_cast<std::uint64_t>(i));
                out[i] = isNorm ? 1.0f + 0.1f * n : amplitude * n;
            }
            return Tensor::fromFloats(options.dtype, planned.shape, values.data());
        },
        job);
    writer.commit();
}

} // namespace mla
