#include "formats/gguf_export.h"

#include "formats/gguf_writer.h"
#include "model/tensor_plan.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/version.h"

#include <functional>

namespace mla {
namespace {

// How each of our architectures is written for llama.cpp. llama.cpp's `llama` architecture rotates adjacent pairs
// (its converter permutes Hugging Face's query/key rows into Meta's interleaved order); `qwen2` and `qwen3` rotate
// the halves of each head (rope type NEOX) and take the rows as they are.
struct GgufArchitectureRow {
    const char* architecture; // ours
    const char* gguf;         // general.architecture
    bool interleavedRope;
    bool needsSquareAttention; // llama.cpp's loader takes heads * head size == hidden size
};

constexpr GgufArchitectureRow kArchitectures[] = {
    {"llama", "llama", true, false},
    {"mistral", "llama", true, false},
    {"qwen2", "qwen2", false, true},
    {"qwen3", "qwen3", false, false},
};

const GgufArchitectureRow& architectureRow(const ModelConfig& c)
{
    if (c.isMla())
        throw Error("a converted (MLA) model in the MHA2MLA layout has no llama.cpp architecture; convert with "
                    "--target deepseek-v3 to write llama.cpp's deepseek2 GGUF");
    for (const auto& row : kArchitectures) {
        if (c.architecture == row.architecture) {
            if (row.needsSquareAttention && c.qDim() != c.hidden)
                throw Error("llama.cpp's " + std::string(row.gguf) + " architecture needs heads x head size ("
                            + std::to_string(c.qDim()) + ") equal to the hidden size (" + std::to_string(c.hidden) + ")");
            return row;
        }
    }
    throw Error("architecture '" + c.architecture + "' has no GGUF export");
}

// Half (j, j + d/2) -> interleaved (2j, 2j+1) inside each head: output row h*d + 2j + s is input row
// h*d + j + s*d/2. The inverse of the reader's reordering.
std::int64_t interleavedSourceRow(std::int64_t row, std::int64_t headDim)
{
    const std::int64_t head = row / headDim;
    const std::int64_t within = row % headDim;
    return head * headDim + within / 2 + (within % 2) * (headDim / 2);
}

bool isQueryOrKey(TensorRole role)
{
    return role == TensorRole::Q || role == TensorRole::K || role == TensorRole::QBias || role == TensorRole::KBias;
}

GgmlType modelWeightType(const Model& model)
{
    switch (model.embedding.dtype()) {
    case DType::F16: return GgmlType::F16;
    case DType::BF16: return GgmlType::BF16;
    case DType::F32: break;
    }
    return GgmlType::F32;
}

void addLlamaFamilyMetadata(GgufWriter& w, const std::string& arch, const ModelConfig& c, GgufExportReport& report)
{
    const std::string p = arch + ".";
    auto u32 = [&](const std::string& key, std::int64_t value) { w.setMetadata(p + key, ggufU32(static_cast<std::uint32_t>(value))); };
    std::int64_t context = c.maxPositions;
    if (context <= 0) {
        context = 2048;
        report.notes.push_back("the source states no context length; context_length written as 2048");
    }
    u32("context_length", context);
    u32("embedding_length", c.hidden);
    u32("block_count", c.layers);
    u32("feed_forward_length", c.ffn);
    u32("attention.head_count", c.heads);
    u32("attention.head_count_kv", c.kvHeads);
    u32("attention.key_length", c.headDim);
    u32("attention.value_length", c.headDim);
    u32("rope.dimension_count", c.headDim);
    u32("vocab_size", c.vocab);
    w.setMetadata(p + "rope.freq_base", ggufF32(static_cast<float>(c.rope.theta)));
    w.setMetadata(p + "attention.layer_norm_rms_epsilon", ggufF32(static_cast<float>(c.rmsEps)));
    switch (c.rope.scaling) {
    case RopeScaling::None: break;
    case RopeScaling::Linear:
        w.setMetadata(p + "rope.scaling.type", ggufString("linear"));
        w.setMetadata(p + "rope.scaling.factor", ggufF32(static_cast<float>(c.rope.factor)));
        break;
    case RopeScaling::Llama3:
        throw Error("Llama 3 RoPE scaling is not written to GGUF yet (llama.cpp keeps it as a rope_freqs tensor)");
    }
    if (c.slidingWindow > 0 && (c.maxPositions == 0 || c.slidingWindow < c.maxPositions)) {
        w.setMetadata("mla_workbench.sliding_window", ggufU32(static_cast<std::uint32_t>(c.slidingWindow)));
        report.notes.push_back("llama.cpp's " + arch + " architecture ignores the sliding window of "
                               + std::to_string(c.slidingWindow) + " tokens: it matches this model only on contexts "
                                 "up to that length");
    }
}

// Never over or into the input; an existing file only when asked to; never a folder or anything not a file.
void checkDestination(const std::filesystem::path& file, const std::filesystem::path& input, bool overwrite)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (file.empty())
        throw Error("no output file given");
    const fs::file_status status = fs::status(file, ec);
    if (fs::exists(status)) {
        if (fs::equivalent(file, input, ec))
            throw Error(file, "is the input model; choose another output file");
        if (!fs::is_regular_file(status))
            throw Error(file, "exists and is not a regular file");
        if (!overwrite)
            throw Error(file, "exists; give --force to replace it");
    }
    const fs::path parent = fs::absolute(file).parent_path();
    if (fs::is_directory(input, ec) && fs::equivalent(parent, input, ec))
        throw Error(file, "is inside the input model's folder; write it elsewhere");
    if (!fs::is_directory(parent, ec))
        throw Error(file, "its folder does not exist");
}

} // namespace

std::string ggufArchitectureFor(const ModelConfig& config)
{
    return architectureRow(config).gguf;
}

GgufTokenizer defaultGgufTokenizer(const Model& model, const std::optional<std::filesystem::path>& tokenizerFile)
{
    if (tokenizerFile)
        return ggufTokenizerFromFile(*tokenizerFile, model.config.vocab);
    if (model.format == "gguf" && model.embeddedVocabulary && !model.embeddedVocabulary->tokens.empty())
        return ggufTokenizerFromGguf(model.source, model.config.vocab);
    if (auto found = findTokenizerNextTo(model.source))
        return ggufTokenizerFromFile(*found, model.config.vocab);
    throw Error(model.source, "no tokenizer found next to the model, and llama.cpp needs one in the GGUF; give it "
                              "with --tokenizer FILE");
}

GgufExportReport exportGguf(const Model& model, const GgufExportOptions& options, const JobControl& job)
{
    const ModelConfig& c = model.config;
    const GgufArchitectureRow& arch = architectureRow(c);
    GgufExportReport report;
    report.file = options.file;
    report.architecture = arch.gguf;
    report.weights = options.weights.value_or(modelWeightType(model));
    for (const auto& [key, value] : options.extraMetadata) {
        if (!key.starts_with("mla_workbench."))
            throw Error("internal: extra GGUF metadata '" + key + "' is outside the mla_workbench namespace");
    }

    // Everything that can fail on the input is checked before the file is created.
    checkDestination(options.file, model.source, options.overwrite);
    const GgufTokenizer tokenizer = defaultGgufTokenizer(model, options.tokenizerFile);
    report.tokenizer = tokenizer.source;
    const auto& traits = ggmlTypeTraits(report.weights);

    // Byte tokens the exported vocabulary gained read as the unknown token does.
    ModelConfig written = c;
    written.vocab += tokenizer.addedByteTokens;
    const std::int64_t unknownRow = tokenizer.vocab.unk.value_or(0);
    if (tokenizer.addedByteTokens > 0)
        report.notes.push_back("the vocabulary spells no byte tokens, on which llama.cpp's tokenizer aborts for any "
                               "character outside it: " + std::to_string(tokenizer.addedByteTokens) + " byte tokens "
                               "were added after it (ids " + std::to_string(c.vocab) + " to "
                               + std::to_string(written.vocab - 1) + "), with the embedding and output rows of the "
                               "unknown token " + std::to_string(unknownRow));

    struct Planned {
        PlannedTensor planned;
        std::string name;
        GgmlType type;
    };
    std::vector<Planned> tensors;
    for (const PlannedTensor& p : tensorPlan(written)) {
        const auto name = tensorName(p.role, TensorNaming::Gguf, p.layer);
        if (!name)
            throw Error("internal: no GGUF name for the " + std::string(tensorRoleLabel(p.role)));
        GgmlType type = GgmlType::F32;
        if (!isVectorRole(p.role)) {
            type = report.weights;
            if (!ggmlRowFits(type, p.shape.back())) {
                type = GgmlType::F16;
                report.keptInF16.push_back(*name);
            }
        }
        tensors.push_back({p, *name, type});
    }

    GgufWriter w(options.file);
    const std::string name = options.name.empty() ? model.source.filename().string() : options.name;
    w.setMetadata("general.architecture", ggufString(arch.gguf));
    w.setMetadata("general.type", ggufString("model"));
    w.setMetadata("general.name", ggufString(name));
    w.setMetadata("general.file_type", ggufU32(traits.fileType));
    w.setMetadata("general.quantization_version", ggufU32(2));
    addLlamaFamilyMetadata(w, arch.gguf, written, report);
    for (auto& [key, value] : ggufTokenizerMetadata(tokenizer))
        w.setMetadata(key, std::move(value));
    w.setMetadata("mla_workbench.version", ggufString(kVersion));
    w.setMetadata("mla_workbench.model", ggufString("original"));
    w.setMetadata("mla_workbench.source", ggufString(model.source.filename().string()));
    w.setMetadata("mla_workbench.source_format", ggufString(model.format));
    if (!report.keptInF16.empty())
        w.setMetadata("mla_workbench.kept_in_f16", ggufStringArray(report.keptInF16));
    if (tokenizer.addedByteTokens > 0)
        w.setMetadata("mla_workbench.added_byte_tokens", ggufU32(static_cast<std::uint32_t>(tokenizer.addedByteTokens)));
    for (const auto& [key, value] : options.extraMetadata)
        w.setMetadata(key, value);

    for (const auto& t : tensors) {
        std::vector<std::uint64_t> dims(t.planned.shape.rbegin(), t.planned.shape.rend());
        w.declareTensor({t.name, t.type, std::move(dims)});
    }

    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const Planned& t = tensors[i];
        job.progress(static_cast<double>(i) / static_cast<double>(tensors.size()), "writing " + t.name);
        const Tensor source = modelTensor(model, t.planned.role, t.planned.layer);
        const bool vocabRows = t.planned.role == TensorRole::Embedding || t.planned.role == TensorRole::Output;
        if (vocabRows && written.vocab > c.vocab) {
            w.writeTensorRows(t.name, [&](std::uint64_t row, float* out) {
                const auto r = static_cast<std::int64_t>(row);
                source.rowToFloat(r < c.vocab ? r : unknownRow, out);
            });
            continue;
        }
        if (source.shape() != t.planned.shape)
            throw Error("internal: tensor '" + t.name + "' has shape " + shapeString(source.shape()) + ", planned "
                        + shapeString(t.planned.shape));
        const bool permute = arch.interleavedRope && isQueryOrKey(t.planned.role);
        if (source.rank() == 1) {
            std::vector<float> values = source.toFloats();
            if (permute) {
                std::vector<float> permuted(values.size());
                for (std::size_t r = 0; r < values.size(); ++r)
                    permuted[r] = values[static_cast<std::size_t>(interleavedSourceRow(static_cast<std::int64_t>(r), c.headDim))];
                values.swap(permuted);
            }
            w.writeTensor(t.name, values.data(), values.size());
            continue;
        }
        w.writeTensorRows(t.name, [&](std::uint64_t row, float* out) {
            const auto r = static_cast<std::int64_t>(row);
            source.rowToFloat(permute ? interleavedSourceRow(r, c.headDim) : r, out);
        });
        MappedFile::releasePages(source.data(), source.bytes());
    }
    job.progress(1.0, "finishing " + options.file.filename().string());
    w.finish();
    report.bytesWritten = w.bytesWritten();
    report.tensors = static_cast<std::int64_t>(tensors.size());
    return report;
}

} // namespace mla
