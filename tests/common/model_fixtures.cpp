#include "backend/compute_backend.h"
#include "common/model_fixtures.h"

#include "common/test_support.h"
#include "engine/generator.h"
#include "model/model_loader.h"

#include <stdexcept>

namespace mla::test {

std::filesystem::path realModelPath(const std::string& name)
{
    if (name == "stories260K")
        return demoDir() / "stories260K.bin";
    if (name == "stories260K-gguf")
        return modelsDir() / "stories260K" / "stories260K.gguf";
    if (name == "aidreams260K")
        return modelsDir() / "aidreams260K" / "aidreams260K.bin";
    if (name == "poem5L")
        return modelsDir() / "poem5L" / "poem_model.bin";
    if (name == "xs260K")
        return modelsDir() / "xs260K" / "xs260K.bin";
    if (name == "stories260K-hf" || name == "aidreams260K-hf")
        return modelsDir() / name;
    throw std::runtime_error("unknown test model " + name);
}

Model loadRealModel(const std::string& name)
{
    return loadModel(realModelPath(name));
}

TokenSequences sampleSequences(const Transformer& model, int count, int length, std::uint64_t seed, float temperature)
{
    TokenSequences out;
    const std::vector<int> start = promptIds(model.config(), nullptr, "");
    for (int i = 0; i < count; ++i) {
        GenerationOptions g;
        g.steps = length;
        g.temperature = temperature;
        g.topP = 1.0f;
        g.seed = seed * 1000 + static_cast<std::uint64_t>(i);
        const GenerationResult r = generate(cpuBackend(), model, nullptr, start, g);
        std::vector<int> s = start;
        s.insert(s.end(), r.ids.begin(), r.ids.end());
        if (s.size() >= 2)
            out.push_back(std::move(s));
    }
    return out;
}

MatrixRM sequenceLogits(const Transformer& model, const std::vector<int>& ids)
{
    KvCache cache = model.newCache(static_cast<std::int64_t>(ids.size()));
    return model.forward(ids, cache, Logits::All);
}

MatrixRM logitsOf(const Model& model, const std::vector<int>& ids)
{
    return sequenceLogits(Transformer(model), ids);
}

ModelConfig tinyConfig(const std::string& variant)
{
    ModelConfig c;
    c.architecture = variant == "qwen2" ? "qwen2" : variant == "qwen3" ? "qwen3" : variant == "mistral" ? "mistral" : "llama";
    c.hidden = 36; // not a multiple of 8: rows of a batch sit at other alignments than a one-row matrix
    c.ffn = 44;
    c.layers = 2;
    c.heads = 6;
    c.kvHeads = 2;
    c.headDim = 6;
    c.vocab = 40;
    c.maxPositions = 64;
    c.rmsEps = 1e-5;
    c.bosId = 1;
    c.eosIds = {2};
    if (variant == "qwen2") {
        c.qkvBias = true;
        c.rope.theta = 1000000.0;
    } else if (variant == "qwen3") {
        c.qkNorm = true;
    } else if (variant == "mistral") {
        c.slidingWindow = 5;
    } else if (variant == "mha") {
        c.kvHeads = c.heads;
        c.tieEmbeddings = false;
        c.qkvBias = c.outputBias = c.mlpBias = true;
    }
    return c;
}

} // namespace mla::test
