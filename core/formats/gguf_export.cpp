#include "formats/gguf_export.h"

#include "formats/gguf_deepseek2.h"
#include "formats/gguf_writer.h"
#include "model/model_files.h"
#include "model/tensor_plan.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/version.h"

#include <cmath>
#include <functional>
#include <memory>

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

// A model in the DeepSeek-V2/V3 layout (a conversion to the deepseek-v3 target, or such a checkpoint) is written as
// llama.cpp's deepseek2 with absorbed MLA.
constexpr GgufArchitectureRow kDeepSeek2{"deepseek_v3", "deepseek2", true, false};

const GgufArchitectureRow& architectureRow(const ModelConfig& c)
{
    if (c.isMla())
        throw Error("the MHA2MLA layout has no llama.cpp architecture: convert with the DeepSeek-V3 target "
                    "(convert --target deepseek-v3 --format gguf), which llama.cpp runs as its deepseek2 architecture "
                    "with a latent cache");
    if (c.deepseek)
        return kDeepSeek2;
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

using Metadata = std::vector<std::pair<std::string, GgufValue>>;

// The keys every architecture we write shares.
void addCommonMetadata(Metadata& m, const std::string& arch, const ModelConfig& c, GgufExportReport& report)
{
    const std::string p = arch + ".";
    auto u32 = [&](const std::string& key, std::int64_t value) { m.emplace_back(p + key, ggufU32(static_cast<std::uint32_t>(value))); };
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
    u32("vocab_size", c.vocab);
    m.emplace_back(p + "rope.freq_base", ggufF32(static_cast<float>(c.rope.theta)));
    m.emplace_back(p + "attention.layer_norm_rms_epsilon", ggufF32(static_cast<float>(c.rmsEps)));
}

void addLlamaFamilyMetadata(Metadata& m, const std::string& arch, const ModelConfig& c, GgufExportReport& report)
{
    const std::string p = arch + ".";
    auto set = [&](const std::string& key, GgufValue value) { m.emplace_back(key, std::move(value)); };
    auto u32 = [&](const std::string& key, std::int64_t value) { set(p + key, ggufU32(static_cast<std::uint32_t>(value))); };
    addCommonMetadata(m, arch, c, report);
    u32("attention.head_count_kv", c.kvHeads);
    u32("attention.key_length", c.headDim);
    u32("attention.value_length", c.headDim);
    u32("rope.dimension_count", c.headDim);
    switch (c.rope.scaling) {
    case RopeScaling::None: break;
    case RopeScaling::Linear:
        set(p + "rope.scaling.type", ggufString("linear"));
        set(p + "rope.scaling.factor", ggufF32(static_cast<float>(c.rope.factor)));
        break;
    case RopeScaling::Llama3:
        throw Error("Llama 3 RoPE scaling is not written to GGUF yet (llama.cpp keeps it as a rope_freqs tensor)");
    case RopeScaling::Yarn:
        throw Error("YaRN RoPE scaling is not written to GGUF for the " + arch + " architecture");
    }
    if (c.slidingWindow > 0 && (c.maxPositions == 0 || c.slidingWindow < c.maxPositions)) {
        set("mla_workbench.sliding_window", ggufU32(static_cast<std::uint32_t>(c.slidingWindow)));
        report.notes.push_back("llama.cpp's " + arch + " architecture ignores the sliding window of "
                               + std::to_string(c.slidingWindow) + " tokens: it matches this model only on contexts "
                                 "up to that length");
    }
}

// One tensor to write: its name, ggml dims (fastest first) and its rows as float32, produced in order.
struct TensorJob {
    std::string name;
    std::vector<std::uint64_t> dims;
    GgufWriter::RowSource row;
    Tensor source; // whose pages are released once written (may be empty)
};

// What one architecture contributes to the file: its keys and its tensors.
struct ArchitecturePlan {
    std::string gguf;
    std::int64_t kvValuesPerToken = 0; // what llama.cpp caches per token over all layers
    std::vector<std::pair<std::string, GgufValue>> metadata;
    std::vector<TensorJob> tensors;
};

std::vector<std::uint64_t> ggmlDims(const std::vector<std::int64_t>& shape)
{
    return {shape.rbegin(), shape.rend()};
}

// A tensor's rows as they are, or with `sourceRow` choosing which source row each output row is.
TensorJob rowsOf(std::string name, const Tensor& t, std::function<std::int64_t(std::int64_t)> sourceRow = {})
{
    TensorJob job{std::move(name), ggmlDims(t.shape()), {}, t};
    if (t.rank() == 1) {
        // A vector is one row of its length.
        job.row = [t, sourceRow](std::uint64_t, float* out) {
            const std::vector<float> v = t.toFloats();
            for (std::size_t i = 0; i < v.size(); ++i)
                out[i] = v[sourceRow ? static_cast<std::size_t>(sourceRow(static_cast<std::int64_t>(i))) : i];
        };
        return job;
    }
    job.row = [t, sourceRow](std::uint64_t row, float* out) {
        const auto r = static_cast<std::int64_t>(row);
        t.rowToFloat(sourceRow ? sourceRow(r) : r, out);
    };
    return job;
}

// Embedding and output head: the vocabulary's rows, then copies of the unknown token's for added byte tokens.
TensorJob vocabularyRowsOf(std::string name, const Tensor& t, std::int64_t vocab, std::int64_t written, std::int64_t unknownRow)
{
    TensorJob job = rowsOf(std::move(name), t, [vocab, unknownRow](std::int64_t r) { return r < vocab ? r : unknownRow; });
    job.dims[1] = static_cast<std::uint64_t>(written);
    return job;
}

ArchitecturePlan planLlamaFamily(const Model& model, const GgufArchitectureRow& arch, const ModelConfig& written,
                                 std::int64_t unknownRow, GgufExportReport& report)
{
    const ModelConfig& c = model.config;
    ArchitecturePlan plan;
    plan.gguf = arch.gguf;
    plan.kvValuesPerToken = 2 * c.kvHeads * c.headDim * c.layers;
    addLlamaFamilyMetadata(plan.metadata, arch.gguf, written, report);
    for (const PlannedTensor& p : tensorPlan(written)) {
        const auto name = tensorName(p.role, TensorNaming::Gguf, p.layer);
        if (!name)
            throw Error("internal: no GGUF name for the " + std::string(tensorRoleLabel(p.role)));
        const Tensor source = modelTensor(model, p.role, p.layer);
        if (p.role == TensorRole::Embedding || p.role == TensorRole::Output) {
            plan.tensors.push_back(vocabularyRowsOf(*name, source, c.vocab, written.vocab, unknownRow));
            continue;
        }
        if (source.shape() != p.shape)
            throw Error("internal: tensor '" + *name + "' has shape " + shapeString(source.shape()) + ", planned "
                        + shapeString(p.shape));
        if (arch.interleavedRope && isQueryOrKey(p.role)) {
            const std::int64_t headDim = c.headDim;
            plan.tensors.push_back(rowsOf(*name, source, [headDim](std::int64_t r) { return interleavedSourceRow(r, headDim); }));
        } else {
            plan.tensors.push_back(rowsOf(*name, source));
        }
    }
    return plan;
}

// llama.cpp's deepseek2 with absorbed MLA (src/models/deepseek2.cpp of the pinned build, formats/gguf_deepseek2.h):
// dense blocks only, q_lora_rank 0 for a plain attn_q, kv_b_proj split per head into attn_k_b / attn_v_b, and the rope
// parts of the queries and of the shared key in llama.cpp's adjacent-pair order. llama.cpp caches kv_lora_rank +
// qk_rope_head_dim values per token and layer, and normalises the latent with the model's rms eps.
ArchitecturePlan planDeepSeek2(const Model& model, const ModelConfig& written, std::int64_t unknownRow, GgufExportReport& report)
{
    const ModelConfig& c = model.config;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    if (!a.latentNorm)
        throw Error("internal: a DeepSeek model without its latent norm is an in-memory ablation and is never written");
    if (a.attentionBias)
        throw Error(model.source, "has attention biases (attention_bias: true), which llama.cpp's deepseek2 architecture does not load");
    if (c.rope.scaling != RopeScaling::None)
        throw Error(model.source, "has rope scaling, which is not written to a deepseek2 GGUF yet");
    // llama.cpp takes 26- and 27-block models (and 48 blocks with a 128,256-token vocabulary) for DeepSeek-V2-Lite
    // and never reads their q_lora_rank: a query latent would then not load.
    const bool lite = c.layers == 26 || c.layers == 27 || (c.layers == 48 && written.vocab == 128256);
    if (lite && a.qLoraRank > 0)
        throw Error(model.source, "has a query latent (q_lora_rank " + std::to_string(a.qLoraRank) + ") and "
                                      + std::to_string(c.layers) + " blocks: llama.cpp takes a deepseek2 model of that "
                                      "depth for DeepSeek-V2-Lite and ignores q_lora_rank, so it would not load");
    if (std::abs(a.latentNormEps - c.rmsEps) > 1e-12)
        report.notes.push_back("llama.cpp normalises the latent with the model's rms eps (" + std::to_string(c.rmsEps)
                               + "), this model with " + std::to_string(a.latentNormEps)
                               + " (as transformers does): negligible while the latent's mean square is far above both");

    ArchitecturePlan plan;
    plan.gguf = kDeepSeek2.gguf;
    plan.kvValuesPerToken = a.cacheElementsPerLayer() * c.layers;
    addCommonMetadata(plan.metadata, plan.gguf, written, report);
    const std::string p = plan.gguf + ".";
    auto u32 = [&](const std::string& key, std::int64_t value) { plan.metadata.emplace_back(p + key, ggufU32(static_cast<std::uint32_t>(value))); };
    // The absorbed view: one key "head" of latent + rope values, the latent as the value (llama.cpp's MQA form).
    u32("attention.head_count_kv", 1);
    u32("attention.key_length", a.kvLoraRank + a.ropeDim);
    u32("attention.value_length", a.kvLoraRank);
    u32("attention.key_length_mla", a.qkHeadDim());
    u32("attention.value_length_mla", a.valueDim);
    u32("attention.q_lora_rank", a.qLoraRank);
    u32("attention.kv_lora_rank", a.kvLoraRank);
    u32("rope.dimension_count", a.ropeDim);
    // Dense: every block is a leading dense block (the expert keys are required by the loader, unused).
    u32("leading_dense_block_count", c.layers);
    u32("expert_feed_forward_length", c.ffn);
    u32("expert_shared_count", 0);

    const DeepSeek2Widths widths{c.heads, a.nopeDim, a.ropeDim, a.valueDim, a.kvLoraRank};
    auto ropeReordered = [&](const std::string& name, const Tensor& t, std::int64_t width) {
        if (a.ropeInterleave)
            return rowsOf(name, t);
        const std::int64_t rope = a.ropeDim;
        return rowsOf(name, t, [width, rope](std::int64_t r) { return deepSeek2InterleavedRopeRow(r, width, rope); });
    };
    for (const PlannedTensor& pt : tensorPlan(written)) {
        const Tensor source = modelTensor(model, pt.role, pt.layer);
        if (pt.role == TensorRole::KvB) {
            // One splitter for both halves, so attn_k_b reads each head's rows once.
            struct Split {
                Tensor kvB;
                DeepSeek2KvBSplitter splitter;
                explicit Split(const Tensor& t, const DeepSeek2Widths& w) : kvB(t), splitter(kvB, w) {}
            };
            auto split = std::make_shared<Split>(source, widths);
            const std::string blk = "blk." + std::to_string(pt.layer) + ".";
            plan.tensors.push_back({blk + "attn_k_b.weight",
                                    {static_cast<std::uint64_t>(a.nopeDim), static_cast<std::uint64_t>(a.kvLoraRank),
                                     static_cast<std::uint64_t>(c.heads)},
                                    [split](std::uint64_t row, float* out) { split->splitter.kBRow(row, out); },
                                    {}});
            plan.tensors.push_back({blk + "attn_v_b.weight",
                                    {static_cast<std::uint64_t>(a.kvLoraRank), static_cast<std::uint64_t>(a.valueDim),
                                     static_cast<std::uint64_t>(c.heads)},
                                    [split](std::uint64_t row, float* out) { split->splitter.vBRow(row, out); },
                                    source});
            continue;
        }
        const auto name = tensorName(pt.role, TensorNaming::Gguf, pt.layer);
        if (!name)
            throw Error(model.source, "llama.cpp's deepseek2 architecture has no " + std::string(tensorRoleLabel(pt.role)));
        if (pt.role == TensorRole::Embedding || pt.role == TensorRole::Output) {
            plan.tensors.push_back(vocabularyRowsOf(*name, source, c.vocab, written.vocab, unknownRow));
            continue;
        }
        if (source.shape() != pt.shape)
            throw Error("internal: tensor '" + *name + "' has shape " + shapeString(source.shape()) + ", planned "
                        + shapeString(pt.shape));
        if (pt.role == TensorRole::Q || pt.role == TensorRole::QB)
            plan.tensors.push_back(ropeReordered(*name, source, a.qkHeadDim()));
        else if (pt.role == TensorRole::KvA)
            plan.tensors.push_back(ropeReordered(*name, source, a.kvLoraRank + a.ropeDim));
        else
            plan.tensors.push_back(rowsOf(*name, source));
    }
    return plan;
}

// The project's output policy, plus a friendlier message for a folder that does not exist.
// The job's inputs are the model's files and folder (model/model_files.h) and the tokenizer file given.
OutputOptions checkDestination(const GgufExportOptions& options, const Model& model)
{
    const std::filesystem::path& file = options.file;
    if (file.empty())
        throw Error("no output file given");
    OutputOptions output{options.overwrite, modelInputFiles(model)};
    if (options.tokenizerFile)
        output.inputs.push_back(*options.tokenizerFile);
    output.inputs.insert(output.inputs.end(), options.otherInputs.begin(), options.otherInputs.end());
    requireOutputFile(file, output, ggufFileKind());
    std::error_code ec;
    if (!std::filesystem::is_directory(std::filesystem::absolute(file).parent_path(), ec))
        throw Error(file, "its folder does not exist");
    return output;
}

} // namespace

void requireGgufDestination(const GgufExportOptions& options, const Model& model)
{
    checkDestination(options, model);
}

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
    const OutputOptions output = checkDestination(options, model);
    const GgufTokenizer tokenizer = defaultGgufTokenizer(model, options.tokenizerFile);
    report.tokenizer = tokenizer.source;

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

    ArchitecturePlan plan = c.deepseek ? planDeepSeek2(model, written, unknownRow, report)
                                       : planLlamaFamily(model, arch, written, unknownRow, report);
    // Vectors (norms, biases) stay F32; a matrix whose rows are not whole blocks of the chosen type goes F16.
    std::vector<GgmlType> types;
    for (const TensorJob& t : plan.tensors) {
        GgmlType type = GgmlType::F32;
        if (t.dims.size() > 1) {
            type = report.weights;
            if (!ggmlRowFits(type, static_cast<std::int64_t>(t.dims[0]))) {
                type = GgmlType::F16;
                report.keptInF16.push_back(t.name);
            }
        }
        types.push_back(type);
    }

    const std::string name = options.name.empty() ? model.source.filename().string() : options.name;
    report.kvValuesPerToken = plan.kvValuesPerToken;
    GgufModelCardInfo card;
    card.name = name;
    card.file = options.file.filename();
    card.architecture = plan.gguf;
    card.weights = report.weights;
    card.source = model.source.filename().string() + " (" + model.format + ")";
    card.conversion = options.conversionSummary;
    card.kvValuesPerToken = plan.kvValuesPerToken;
    card.sourceKvValuesPerToken = options.sourceKvValuesPerToken > 0 ? options.sourceKvValuesPerToken : plan.kvValuesPerToken;
    card.quality = options.quality;
    card.notes = report.notes;
    if (!report.keptInF16.empty())
        card.notes.push_back(std::to_string(report.keptInF16.size()) + " matrices whose rows are not whole 32-weight "
                             "blocks are stored in F16");
    report.modelCard = ggufModelCardMarkdown(card);

    GgufWriter w(options.file, 32, output);
    w.setMetadata("general.architecture", ggufString(plan.gguf));
    w.setMetadata("general.type", ggufString("model"));
    w.setMetadata("general.name", ggufString(name));
    w.setMetadata("general.file_type", ggufU32(ggmlTypeTraits(report.weights).fileType));
    w.setMetadata("general.quantization_version", ggufU32(2));
    for (auto& [key, value] : plan.metadata)
        w.setMetadata(key, std::move(value));
    for (auto& [key, value] : ggufTokenizerMetadata(tokenizer))
        w.setMetadata(key, std::move(value));
    w.setMetadata("mla_workbench.version", ggufString(kVersion));
    w.setMetadata("mla_workbench.model", ggufString(c.isMla() || plan.gguf == "deepseek2" ? "converted" : "original"));
    w.setMetadata("mla_workbench.source", ggufString(model.source.filename().string()));
    w.setMetadata("mla_workbench.source_format", ggufString(model.format));
    if (!report.keptInF16.empty())
        w.setMetadata("mla_workbench.kept_in_f16", ggufStringArray(report.keptInF16));
    if (tokenizer.addedByteTokens > 0)
        w.setMetadata("mla_workbench.added_byte_tokens", ggufU32(static_cast<std::uint32_t>(tokenizer.addedByteTokens)));
    for (const auto& [key, value] : options.extraMetadata)
        w.setMetadata(key, value);
    if (options.quality) {
        const GgufQuality& q = *options.quality;
        w.setMetadata("mla_workbench.quality.source_perplexity", ggufF32(static_cast<float>(q.sourcePerplexity)));
        w.setMetadata("mla_workbench.quality.perplexity", ggufF32(static_cast<float>(q.exportPerplexity)));
        w.setMetadata("mla_workbench.quality.kl", ggufF32(static_cast<float>(q.kl)));
        w.setMetadata("mla_workbench.quality.top1_agreement", ggufF32(static_cast<float>(q.top1Agreement)));
        w.setMetadata("mla_workbench.quality.tokens", ggufU64(static_cast<std::uint64_t>(q.tokens)));
    }
    w.setMetadata("mla_workbench.model_card", ggufString(report.modelCard));

    for (std::size_t i = 0; i < plan.tensors.size(); ++i)
        w.declareTensor({plan.tensors[i].name, types[i], plan.tensors[i].dims});
    for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
        const TensorJob& t = plan.tensors[i];
        job.progress(static_cast<double>(i) / static_cast<double>(plan.tensors.size()), "writing " + t.name);
        w.writeTensorRows(t.name, t.row);
        if (!t.source.empty())
            MappedFile::releasePages(t.source.data(), t.source.bytes());
    }
    job.progress(1.0, "finishing " + options.file.filename().string());
    w.finish();
    report.bytesWritten = w.bytesWritten();
    report.tensors = static_cast<std::int64_t>(plan.tensors.size());
    return report;
}

} // namespace mla
