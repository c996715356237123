#include "formats/checkpoint_source.h"
#include "formats/gguf.h"
#include "formats/gguf_deepseek2.h"
#include "model/architecture.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <memory>

namespace mla {
namespace {

// GGUF architectures we read, and how each stores RoPE pairs. llama.cpp's converter permutes Llama query/key rows
// back to Meta's interleaved layout. Its deepseek2 (dense layers only) is Multi-head Latent Attention in the
// DeepSeek-V3 layout with interleaved rope parts, kept as stored (DeepSeekAttentionConfig::ropeInterleave).
struct GgufArchitecture {
    const char* ggufName;
    const char* architecture; // our table key
    bool interleavedRope;
    bool latentAttention;
};

constexpr GgufArchitecture kGgufArchitectures[] = {
    {"llama", "llama", true, false},
    {"qwen2", "qwen2", false, false},
    {"qwen3", "qwen3", false, false},
    {"deepseek2", "deepseek_v3", false, true},
};

std::string supportedGgufArchitectures()
{
    std::string s;
    for (const auto& a : kGgufArchitectures)
        s += (s.empty() ? "" : ", ") + std::string(a.ggufName);
    return s;
}

struct GgufIntegerKey {
    const char* suffix; // after "<arch>."
    std::int64_t ModelConfig::*member;
    bool required;
};

constexpr GgufIntegerKey kGgufIntegers[] = {
    {"embedding_length", &ModelConfig::hidden, true},
    {"feed_forward_length", &ModelConfig::ffn, true},
    {"block_count", &ModelConfig::layers, true},
    {"attention.head_count", &ModelConfig::heads, true},
    {"attention.head_count_kv", &ModelConfig::kvHeads, false},
    {"attention.key_length", &ModelConfig::headDim, false},
    {"context_length", &ModelConfig::maxPositions, false},
    {"vocab_size", &ModelConfig::vocab, false},
};

bool isInteger(const GgufValue& v)
{
    return v.type != GgufValueType::String && v.type != GgufValueType::Array && v.type != GgufValueType::F32
           && v.type != GgufValueType::F64 && v.type != GgufValueType::Bool;
}

std::optional<int> optionalId(const GgufFile& g, const char* key)
{
    const GgufValue* v = g.find(key);
    if (!v || !isInteger(*v) || v->integer < 0 || v->integer > (1 << 30))
        return std::nullopt;
    return static_cast<int>(v->integer);
}

EmbeddedVocabulary vocabularyFrom(const GgufFile& g)
{
    EmbeddedVocabulary vocab;
    const GgufValue* model = g.find("tokenizer.ggml.model");
    vocab.model = model && model->type == GgufValueType::String ? model->string : "";
    if (const auto* tokens = g.find("tokenizer.ggml.tokens"); tokens && tokens->arrayType == GgufValueType::String)
        vocab.tokens = tokens->strings;
    if (const auto* scores = g.find("tokenizer.ggml.scores"))
        vocab.scores.assign(scores->numbers.begin(), scores->numbers.end());
    if (const auto* types = g.find("tokenizer.ggml.token_type"))
        vocab.types.assign(types->numbers.begin(), types->numbers.end());
    if (const auto* merges = g.find("tokenizer.ggml.merges"); merges && merges->arrayType == GgufValueType::String)
        vocab.merges = merges->strings;
    vocab.bos = optionalId(g, "tokenizer.ggml.bos_token_id");
    vocab.eos = optionalId(g, "tokenizer.ggml.eos_token_id");
    vocab.unk = optionalId(g, "tokenizer.ggml.unknown_token_id");
    if (const auto* addBos = g.find("tokenizer.ggml.add_bos_token"); addBos && addBos->type == GgufValueType::Bool)
        vocab.addBos = addBos->boolean;
    if (const auto* pre = g.find("tokenizer.ggml.pre"); pre && pre->type == GgufValueType::String)
        vocab.preTokenizer = pre->string;
    return vocab;
}

} // namespace

CheckpointSource openGgufCheckpoint(const std::filesystem::path& path)
{
    auto gguf = std::make_shared<GgufFile>(GgufFile::open(path));
    // Quantised tensors become F32 copies on load: refuse at once when they cannot all fit.
    if (const std::uint64_t bytes = gguf->dequantizedBytes())
        requireMemory(bytes, "dequantising the quantised tensors to F32", path);
    const GgufValue* archValue = gguf->find("general.architecture");
    if (!archValue || archValue->type != GgufValueType::String)
        throw Error(path, "missing general.architecture");
    const GgufArchitecture* arch = nullptr;
    for (const auto& a : kGgufArchitectures) {
        if (archValue->string == a.ggufName)
            arch = &a;
    }
    if (!arch)
        throw Error(path, "GGUF architecture '" + archValue->string + "' is not supported (supported: " + supportedGgufArchitectures() + ")");
    const std::string prefix = std::string(arch->ggufName) + ".";

    CheckpointSource source;
    source.format = "gguf";
    source.file = path;
    source.fileBytes = gguf->fileSize();
    source.naming = TensorNaming::Gguf;
    source.interleavedRope = arch->interleavedRope;
    ModelConfig& c = source.config;
    c.architecture = arch->architecture;
    for (const auto& key : kGgufIntegers) {
        const GgufValue* v = gguf->find(prefix + key.suffix);
        if (!v) {
            if (key.required)
                throw Error(path, "missing metadata " + prefix + key.suffix);
            continue;
        }
        if (!isInteger(*v))
            throw Error(path, "metadata " + prefix + key.suffix + " must be an integer");
        c.*(key.member) = v->integer;
    }
    if (c.kvHeads == 0)
        c.kvHeads = c.heads;
    if (c.headDim == 0 && c.heads > 0) {
        if (c.hidden % c.heads != 0)
            throw Error(path, std::to_string(c.heads) + " attention heads do not divide " + prefix + "embedding_length "
                                  + std::to_string(c.hidden));
        c.headDim = c.hidden / c.heads;
    }
    if (const auto* eps = gguf->find(prefix + "attention.layer_norm_rms_epsilon"))
        c.rmsEps = eps->number;
    if (const auto* base = gguf->find(prefix + "rope.freq_base"))
        c.rope.theta = base->number;
    std::optional<DeepSeek2Hyperparameters> deepseek;
    if (arch->latentAttention) {
        // head_count_kv and key_length describe llama.cpp's absorbed view (one latent "head"), not ours.
        const GgufValue* vocabKey = gguf->find(prefix + "vocab_size");
        const GgufValue* tokens = gguf->find("tokenizer.ggml.tokens");
        const std::int64_t vocab = vocabKey ? vocabKey->integer : tokens ? static_cast<std::int64_t>(tokens->strings.size()) : 0;
        deepseek = readDeepSeek2Hyperparameters(*gguf, c.hidden, c.heads, c.layers, vocab);
        if (deepseek->yarn)
            throw Error(path, "metadata " + prefix + "rope.scaling.type yarn: YaRN-scaled deepseek2 models are not supported yet");
        c.kvHeads = c.heads;
        c.headDim = deepseek->widths.nope + deepseek->widths.rope;
    }
    if (const auto* ropeDims = gguf->find(prefix + "rope.dimension_count"); !deepseek && ropeDims && c.headDim > 0 && ropeDims->integer != c.headDim)
        throw Error(path, "rope.dimension_count " + std::to_string(ropeDims->integer) + " differs from the head size "
                              + std::to_string(c.headDim) + "; partial rotary embeddings are not supported");
    if (const auto* scaling = gguf->find(prefix + "rope.scaling.type"); scaling && scaling->string != "none") {
        if (scaling->string != "linear")
            throw Error(path, "rope.scaling.type '" + scaling->string + "' is not supported (none, linear)");
        c.rope.scaling = RopeScaling::Linear;
        const auto* factor = gguf->find(prefix + "rope.scaling.factor");
        c.rope.factor = factor ? factor->number : 1.0;
    }

    const auto embedding = gguf->tensor("token_embd.weight");
    if (!embedding)
        throw Error(path, "missing tensor 'token_embd.weight'");
    if (c.vocab == 0)
        c.vocab = embedding->rows();
    c.tieEmbeddings = !gguf->tensor("output.weight").has_value();
    // Optional tensors llama.cpp's loaders accept for these architectures; present in layer 0, required in all.
    const ArchitectureInfo& info = architectureInfo(c.architecture);
    c.qkvBias = info.qkvBiasAlways || gguf->tensor("blk.0.attn_q.bias").has_value();
    c.outputBias = gguf->tensor("blk.0.attn_output.bias").has_value();
    c.mlpBias = gguf->tensor("blk.0.ffn_gate.bias").has_value();
    c.qkNorm = info.qkNorm;
    if (deepseek) {
        const DeepSeek2Widths& w = deepseek->widths;
        DeepSeekAttentionConfig a;
        a.kvLoraRank = w.kvLora;
        a.qLoraRank = deepseek->qLoraRank;
        a.ropeDim = w.rope;
        a.nopeDim = w.nope;
        a.valueDim = w.value;
        a.ropeInterleave = true; // llama.cpp's deepseek2 rotates adjacent pairs
        a.latentNormEps = c.rmsEps; // llama.cpp normalises the latent with the model's eps
        a.yarnMscaleInScale = true;
        c.deepseek = a;
        c.qkvBias = c.outputBias = c.mlpBias = false; // llama.cpp's deepseek2 loads none
        c.qkNorm = false;
    }
    source.vocabulary = vocabularyFrom(*gguf);
    c.bosId = source.vocabulary->bos;
    if (source.vocabulary->eos)
        c.eosIds = {*source.vocabulary->eos};
    c.validate(path);

    source.find = [gguf](const std::string& name) { return gguf->tensor(name); };
    if (deepseek && deepseek->absorbed)
        source.find = [gguf, path, w = deepseek->widths](const std::string& name) -> std::optional<Tensor> {
            // kv_b_proj, named attn_kv_b as in llama.cpp's older files, is merged from its per-head halves.
            const std::string suffix = ".attn_kv_b.weight";
            if (!name.ends_with(suffix))
                return gguf->tensor(name);
            const std::string block = name.substr(0, name.size() - suffix.size());
            auto part = [&](const char* which, const std::vector<std::int64_t>& shape) {
                const std::string n = block + which;
                const auto t = gguf->tensor(n);
                if (!t)
                    throw Error(path, "missing tensor '" + n + "' (half of the latent up projection kv_b_proj)");
                if (t->shape() != shape)
                    throw Error(path, "tensor '" + n + "' has wrong shape; expected " + shapeString(shape) + ", got "
                                          + shapeString(t->shape()));
                return *t;
            };
            const Tensor kB = part(".attn_k_b.weight", {w.heads, w.kvLora, w.nope});
            const Tensor vB = part(".attn_v_b.weight", {w.heads, w.value, w.kvLora});
            return deepSeek2KvB(kB, vB, w);
        };
    return source;
}

} // namespace mla
