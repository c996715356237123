#include "formats/checkpoint_source.h"
#include "util/byte_reader.h"
#include "util/error.h"
#include "util/mapped_file.h"

#include <cstdlib>
#include <map>

namespace mla {
namespace {

// The legacy (version 0) llama2.c layout: tensors follow the header in this order, each [layers x ...] block holding
// every layer's tensor back to back. Shapes are in units of the header's sizes.
enum class L2Dim { One, Dim, Hidden, KvDim, Vocab, SeqLen, HalfHead };

struct L2Tensor {
    TensorRole role;
    bool perLayer;
    L2Dim rows;
    L2Dim cols;
};

constexpr L2Tensor kLlama2cLayout[] = {
    {TensorRole::Embedding, false, L2Dim::Vocab, L2Dim::Dim},
    {TensorRole::AttnNorm, true, L2Dim::Dim, L2Dim::One},
    {TensorRole::Q, true, L2Dim::Dim, L2Dim::Dim},
    {TensorRole::K, true, L2Dim::KvDim, L2Dim::Dim},
    {TensorRole::V, true, L2Dim::KvDim, L2Dim::Dim},
    {TensorRole::O, true, L2Dim::Dim, L2Dim::Dim},
    {TensorRole::FfnNorm, true, L2Dim::Dim, L2Dim::One},
    {TensorRole::Gate, true, L2Dim::Hidden, L2Dim::Dim},
    {TensorRole::Down, true, L2Dim::Dim, L2Dim::Hidden},
    {TensorRole::Up, true, L2Dim::Hidden, L2Dim::Dim},
    {TensorRole::OutputNorm, false, L2Dim::Dim, L2Dim::One},
};

struct Llama2cHeader {
    std::int32_t dim, hidden, layers, heads, kvHeads, vocab, seqLen;
};

} // namespace

CheckpointSource openLlama2cCheckpoint(const std::filesystem::path& path)
{
    auto file = MappedFile::open(path);
    ByteReader reader(file->data(), file->size(), path);
    Llama2cHeader h{};
    h.dim = reader.read<std::int32_t>("header");
    h.hidden = reader.read<std::int32_t>("header");
    h.layers = reader.read<std::int32_t>("header");
    h.heads = reader.read<std::int32_t>("header");
    h.kvHeads = reader.read<std::int32_t>("header");
    h.vocab = reader.read<std::int32_t>("header");
    h.seqLen = reader.read<std::int32_t>("header");

    const bool sharedClassifier = h.vocab > 0;
    const std::int64_t vocab = std::llabs(static_cast<long long>(h.vocab));
    auto require = [&](bool ok, const std::string& problem) {
        if (!ok)
            throw Error(path, "not a safetensors/GGUF/llama2.c checkpoint (read as llama2.c, its header makes no sense): " + problem);
    };
    require(h.dim > 0 && h.hidden > 0 && h.layers > 0 && h.heads > 0 && h.kvHeads > 0 && vocab > 0 && h.seqLen > 0,
            "header has a non-positive size (dim " + std::to_string(h.dim) + ", hidden " + std::to_string(h.hidden)
                + ", layers " + std::to_string(h.layers) + ", heads " + std::to_string(h.heads) + ", kv heads "
                + std::to_string(h.kvHeads) + ", vocab " + std::to_string(h.vocab) + ", seq_len " + std::to_string(h.seqLen) + ")");
    require(h.dim % h.heads == 0, std::to_string(h.heads) + " heads do not divide dim " + std::to_string(h.dim));
    require(h.heads % h.kvHeads == 0, std::to_string(h.kvHeads) + " kv heads do not divide " + std::to_string(h.heads) + " heads");
    const std::int64_t headDim = h.dim / h.heads;
    require(headDim % 2 == 0, "head size " + std::to_string(headDim) + " is odd");

    auto size = [&](L2Dim d) -> std::uint64_t {
        switch (d) {
        case L2Dim::One: return 1;
        case L2Dim::Dim: return static_cast<std::uint64_t>(h.dim);
        case L2Dim::Hidden: return static_cast<std::uint64_t>(h.hidden);
        case L2Dim::KvDim: return static_cast<std::uint64_t>(h.kvHeads) * static_cast<std::uint64_t>(headDim);
        case L2Dim::Vocab: return static_cast<std::uint64_t>(vocab);
        case L2Dim::SeqLen: return static_cast<std::uint64_t>(h.seqLen);
        case L2Dim::HalfHead: return static_cast<std::uint64_t>(headDim / 2);
        }
        return 0;
    };

    // The whole layout's size must equal the file's, so a wrong header is caught before any tensor is touched.
    std::uint64_t expected = 28;
    for (const auto& t : kLlama2cLayout) {
        std::uint64_t n = checkedMul(size(t.rows), size(t.cols), path, "tensor size");
        if (t.perLayer)
            n = checkedMul(n, static_cast<std::uint64_t>(h.layers), path, "tensor size");
        expected = checkedAdd(expected, checkedMul(n, 4, path, "tensor size"), path, "file size");
    }
    const std::uint64_t ropeTables = checkedMul(checkedMul(size(L2Dim::SeqLen), size(L2Dim::HalfHead), path, "RoPE table"), 8, path, "RoPE table");
    expected = checkedAdd(expected, ropeTables, path, "file size");
    if (!sharedClassifier)
        expected = checkedAdd(expected, checkedMul(checkedMul(size(L2Dim::Vocab), size(L2Dim::Dim), path, "classifier"), 4, path, "classifier"), path, "file size");
    if (expected != file->size())
        throw Error(path, "file size " + std::to_string(file->size()) + " bytes does not match its llama2.c header, which "
                              "describes " + std::to_string(expected) + " bytes (dim " + std::to_string(h.dim) + ", layers "
                              + std::to_string(h.layers) + ", vocab " + std::to_string(h.vocab) + ")");

    CheckpointSource source;
    source.format = "llama2c";
    source.file = path;
    source.fileBytes = file->size();
    source.naming = TensorNaming::HuggingFace;
    source.interleavedRope = true;
    ModelConfig& c = source.config;
    c.architecture = "llama";
    c.hidden = h.dim;
    c.ffn = h.hidden;
    c.layers = h.layers;
    c.heads = h.heads;
    c.kvHeads = h.kvHeads;
    c.headDim = headDim;
    c.vocab = vocab;
    c.maxPositions = h.seqLen;
    c.rmsEps = 1e-5;
    c.rope.theta = 10000.0;
    c.tieEmbeddings = sharedClassifier;
    c.bosId = 1;
    c.eosIds = {2};
    c.validate(path);

    auto tensors = std::make_shared<std::map<std::string, Tensor>>();
    std::size_t offset = 28;
    auto view = [&](std::uint64_t rows, std::uint64_t cols) {
        std::vector<std::int64_t> shape = cols == 1 ? std::vector<std::int64_t>{static_cast<std::int64_t>(rows)}
                                                    : std::vector<std::int64_t>{static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)};
        Tensor t(DType::F32, std::move(shape), file->data() + offset, file);
        offset += static_cast<std::size_t>(rows * cols * 4);
        return t;
    };
    for (const auto& t : kLlama2cLayout) {
        const std::uint64_t rows = size(t.rows);
        const std::uint64_t cols = size(t.cols);
        if (!t.perLayer) {
            (*tensors)[*tensorName(t.role, TensorNaming::HuggingFace)] = view(rows, cols);
            continue;
        }
        for (std::int64_t l = 0; l < h.layers; ++l)
            (*tensors)[*tensorName(t.role, TensorNaming::HuggingFace, l)] = view(rows, cols);
    }
    offset += static_cast<std::size_t>(ropeTables);
    if (!sharedClassifier)
        (*tensors)[*tensorName(TensorRole::Output, TensorNaming::HuggingFace)] = view(size(L2Dim::Vocab), size(L2Dim::Dim));

    source.find = [tensors](const std::string& name) -> std::optional<Tensor> {
        auto it = tensors->find(name);
        if (it == tensors->end())
            return std::nullopt;
        return it->second;
    };
    return source;
}

} // namespace mla
