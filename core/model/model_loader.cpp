#include "model/model_loader.h"

#include "formats/checkpoint_source.h"
#include "model/architecture.h"
#include "model/tensor_plan.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/input_integrity.h"
#include "util/memory_budget.h"

#include <algorithm>
#include <cstring>
#include <unistd.h>

namespace mla {
namespace {

struct CheckpointFormat {
    const char* name;
    bool (*matches)(const std::filesystem::path& path, const char* magic, std::size_t magicBytes);
    CheckpointSource (*open)(const std::filesystem::path& path);
};

bool isHuggingFace(const std::filesystem::path& path, const char*, std::size_t)
{
    namespace fs = std::filesystem;
    if (fs::is_directory(path))
        return fs::exists(path / "config.json");
    return path.extension() == ".safetensors" || path.filename() == "model.safetensors.index.json";
}

bool isGguf(const std::filesystem::path&, const char* magic, std::size_t n)
{
    return n >= 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

bool isLlama2c(const std::filesystem::path& path, const char*, std::size_t n)
{
    return !std::filesystem::is_directory(path) && n >= 4;
}

// Checked in order; llama2.c has no magic, so it is the fallback for other files.
constexpr CheckpointFormat kFormats[] = {
    {"safetensors", isHuggingFace, openHuggingFaceCheckpoint},
    {"gguf", isGguf, openGgufCheckpoint},
    {"llama2c", isLlama2c, openLlama2cCheckpoint},
};

// What a file that cannot be a checkpoint is, for the message; empty where it may be one (llama2.c has no magic, so
// anything binary is tried as llama2.c, whose header and size checks then decide).
std::string whatItIs(const unsigned char* head, std::size_t n)
{
    if (n == 0)
        return "the file is empty";
    if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0)
        return "this is a zip archive (a PyTorch .bin/.pt checkpoint? convert it to safetensors first)";
    if (n >= 8 && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0)
        return "this is an HDF5 file (an MLA Workbench session? read it with the 'session' command)";
    if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
        return "this is a Python pickle (a PyTorch checkpoint? convert it to safetensors first)";
    std::size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t'))
        ++i;
    if (i < n && (head[i] == '{' || head[i] == '['))
        return "this is JSON (a config.json? give the folder that holds it and the weights)";
    for (std::size_t k = 0; k < n; ++k) {
        const unsigned char c = head[k];
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f')
            return {};
    }
    return "this is a text file";
}

const CheckpointFormat& formatFor(const std::filesystem::path& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec))
        throw Error(path, "no such file or folder");
    char magic[8] = {};
    std::size_t n = 0;
    if (!fs::is_directory(path)) {
        // A FIFO, device or socket is refused here, at once (opening never blocks).
        const InputFile in(path, "checkpoint");
        unsigned char head[4096];
        const ssize_t got = ::pread(in.descriptor(), head, sizeof head, 0);
        n = got > 0 ? static_cast<std::size_t>(got) : 0;
        if (n < 4)
            throw Error(path, "file is too short to be a checkpoint (not a safetensors/GGUF/llama2.c checkpoint: "
                                  + std::to_string(n) + " bytes)");
        std::memcpy(magic, head, std::min(n, sizeof magic));
        const bool namedHuggingFace = path.extension() == ".safetensors" || path.filename() == "model.safetensors.index.json";
        if (!namedHuggingFace && !(n >= 4 && std::memcmp(magic, "GGUF", 4) == 0)) {
            const std::string what = whatItIs(head, n);
            if (!what.empty())
                throw Error(path, "not a safetensors/GGUF/llama2.c checkpoint: " + what);
        }
    }
    for (const auto& f : kFormats) {
        if (f.matches(path, magic, n))
            return f;
    }
    if (fs::is_directory(path))
        throw Error(path, "folder holds no config.json: not a Hugging Face checkpoint");
    throw Error(path, "file is too short to be a checkpoint");
}

// Interleaved (2j, 2j+1) -> half (j, j + d/2) row order inside each head of a [heads * headDim, ...] tensor.
std::vector<std::int64_t> halfLayoutRowOrder(std::int64_t heads, std::int64_t headDim)
{
    std::vector<std::int64_t> order;
    order.reserve(static_cast<std::size_t>(heads * headDim));
    for (std::int64_t h = 0; h < heads; ++h) {
        for (std::int64_t j = 0; j < headDim / 2; ++j)
            order.push_back(h * headDim + 2 * j);
        for (std::int64_t j = 0; j < headDim / 2; ++j)
            order.push_back(h * headDim + 2 * j + 1);
    }
    return order;
}

Tensor permuteRows(const Tensor& t, const std::vector<std::int64_t>& order)
{
    const std::size_t rowBytes = static_cast<std::size_t>(t.cols()) * dtypeSize(t.dtype());
    auto buffer = std::shared_ptr<std::uint8_t[]>(new std::uint8_t[rowBytes * order.size() + 1]);
    for (std::size_t i = 0; i < order.size(); ++i)
        std::memcpy(buffer.get() + i * rowBytes, t.rowBytes(order[i]), rowBytes);
    const void* data = buffer.get();
    return Tensor(t.dtype(), t.shape(), data, std::shared_ptr<const void>(buffer, buffer.get()));
}

VectorF permuteVector(const VectorF& v, const std::vector<std::int64_t>& order)
{
    VectorF out(static_cast<Eigen::Index>(order.size()));
    for (std::size_t i = 0; i < order.size(); ++i)
        out[static_cast<Eigen::Index>(i)] = v[order[i]];
    return out;
}

Model buildModel(CheckpointSource& source)
{
    const ModelConfig& c = source.config;
    if (c.isMla() && source.interleavedRope)
        throw Error(source.file, "MLA checkpoints are only read from Hugging Face folders");
    Model model;
    model.config = c;
    model.source = source.file;
    model.format = source.format;
    const bool interleavedDeepSeek = c.deepseek && c.deepseek->ropeInterleave; // kept as stored (docs/deepseek-export.md)
    model.sourceRopeLayout = source.interleavedRope || interleavedDeepSeek ? "interleaved" : "half";
    model.fileBytes = source.fileBytes;
    model.sourceConfigJson = source.configJson;
    model.embeddedVocabulary = source.vocabulary;
    model.layers.resize(static_cast<std::size_t>(c.layers));

    // A tensor stored under an alias (safetensors __metadata__), and tied embeddings stored under either name: the
    // output head's name when only it was kept (safetensors' save_model keeps "lm_head.weight" of a shared pair).
    auto find = [&](const std::string& name) -> std::optional<Tensor> {
        if (auto t = source.find(name))
            return t;
        if (auto alias = source.aliases.find(name); alias != source.aliases.end())
            return source.find(alias->second);
        return std::nullopt;
    };
    for (const PlannedTensor& planned : tensorPlan(c)) {
        const auto name = tensorName(planned.role, source.naming, planned.layer);
        if (!name)
            throw Error(source.file, "this format cannot hold the " + std::string(tensorRoleLabel(planned.role)));
        auto tensor = find(*name);
        if (!tensor && planned.role == TensorRole::Embedding && c.tieEmbeddings)
            tensor = find(*tensorName(TensorRole::Output, source.naming));
        if (!tensor)
            throw Error(source.file, "missing tensor '" + *name + "' (" + std::string(tensorRoleLabel(planned.role)) + ")"
                                         + (planned.role == TensorRole::Output
                                                ? std::string("; config.json does not say tie_word_embeddings: true, so the output head is not the embedding")
                                                : std::string()));
        if (tensor->shape() != planned.shape)
            throw Error(source.file, "tensor '" + *name + "' has wrong shape; expected " + shapeString(planned.shape)
                                         + ", got " + shapeString(tensor->shape()));
        setModelTensor(model, planned.role, planned.layer, *tensor);
    }
    if (c.tieEmbeddings)
        model.output = model.embedding;

    if (source.interleavedRope) {
        // The reordered rows are copies (the only weights that leave the memory map): refuse before copying when
        // this machine cannot hold them.
        std::uint64_t copies = 0;
        for (const LayerWeights& w : model.layers)
            copies += w.q.bytes() + w.k.bytes();
        requireMemory(copies, "reordering the query and key rows of " + std::to_string(c.layers) + " layers into the RoPE layout",
                      source.file);
        const auto qOrder = halfLayoutRowOrder(c.heads, c.headDim);
        const auto kOrder = halfLayoutRowOrder(c.kvHeads, c.headDim);
        for (LayerWeights& w : model.layers) {
            w.q = permuteRows(w.q, qOrder);
            w.k = permuteRows(w.k, kOrder);
            if (w.qBias.size())
                w.qBias = permuteVector(w.qBias, qOrder);
            if (w.kBias.size())
                w.kBias = permuteVector(w.kBias, kOrder);
        }
    }
    return model;
}

} // namespace

std::string detectCheckpointFormat(const std::filesystem::path& path)
{
    return formatFor(path).name;
}

Model loadModel(const std::filesystem::path& path)
{
    CheckpointSource source = formatFor(path).open(path);
    Model model = buildModel(source);
    checkMappedInputs(); // the file may have shrunk while its tensors were copied or reordered
    return model;
}

} // namespace mla
