#include "cli_common.h"
#include "commands.h"
#include "formats/gguf.h"
#include "model/architecture.h"
#include "model/rope.h"
#include "tensor/dtype.h"

#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

namespace mla::cli {
namespace {

std::string weightDtypes(const Model& m)
{
    std::set<std::string> names;
    names.insert(std::string(dtypeName(m.embedding.dtype())));
    for (const auto& l : m.layers) {
        for (const Tensor* t : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down, &l.upK, &l.upV})
            if (!t->empty())
                names.insert(std::string(dtypeName(t->dtype())));
    }
    std::string s;
    for (const auto& n : names)
        s += (s.empty() ? "" : "+") + n;
    return s;
}

nlohmann::ordered_json infoJson(const pipeline::OpenedModel& opened)
{
    const Model& m = *opened.model;
    const ModelConfig& c = m.config;
    nlohmann::ordered_json j;
    j["model"] = m.source.string();
    j["format"] = m.format;
    j["architecture"] = c.architecture;
    j["layers"] = c.layers;
    j["hidden"] = c.hidden;
    j["ffn"] = c.ffn;
    j["heads"] = c.heads;
    j["kv_heads"] = c.kvHeads;
    j["head_dim"] = c.headDim;
    j["vocab"] = c.vocab;
    j["max_positions"] = c.maxPositions;
    j["params"] = m.parameterCount();
    j["weight_dtype"] = weightDtypes(m);
    j["weight_bytes"] = m.weightBytes();
    if (m.format == "gguf") {
        // How the file stored the weights: quantised types were dequantised to the F32 weight_dtype on load.
        const GgufQuantization q = GgufFile::open(m.source).quantization();
        if (!q.fileType.empty())
            j["quantization"] = q.fileType;
        j["tensor_types"] = q.tensorTypes;
    }
    j["attention"] = c.attentionKind();
    j["kv_elements_per_token"] = c.kvElementsPerToken();
    j["kv_bytes_per_token_f32"] = c.kvElementsPerToken() * 4;
    j["kv_bytes_per_token_bf16"] = c.kvElementsPerToken() * 2;
    j["rope_theta"] = c.rope.theta;
    j["rope_layout_in_file"] = m.sourceRopeLayout;
    j["rms_norm_eps"] = c.rmsEps;
    j["tied_embeddings"] = c.tieEmbeddings;
    j["qkv_bias"] = c.qkvBias;
    const auto& arch = architectureInfo(c.architecture);
    j["conversion_supported"] = arch.conversionSupported && !c.isMla();
    if (!arch.conversionSupported)
        j["conversion_unsupported_reason"] = std::string(arch.conversionUnsupportedReason);
    if (c.isMla()) {
        nlohmann::ordered_json layers = nlohmann::ordered_json::array();
        for (const auto& l : c.mla->layers) {
            layers.push_back({{"method", std::string(latentMethodName(l.method))},
                              {"rope_pairs", l.ropePairs()},
                              {"latent_dim", l.latentWidth()},
                              {"kv_elements_per_token", l.cacheElements(c.kvHeads, c.headDim)}});
        }
        j["mla_layers"] = layers;
    }
    if (c.deepseek) {
        const DeepSeekAttentionConfig& a = *c.deepseek;
        j["latent_attention"] = {{"layout", "deepseek"}, {"kv_lora_rank", a.kvLoraRank},
                                 {"q_lora_rank", a.qLoraRank > 0 ? nlohmann::ordered_json(a.qLoraRank) : nlohmann::ordered_json()},
                                 {"qk_rope_head_dim", a.ropeDim}, {"qk_nope_head_dim", a.nopeDim}, {"v_head_dim", a.valueDim},
                                 {"rope_interleave", a.ropeInterleave}};
    }
    j["tokenizer"] = opened.tokenizer ? nlohmann::ordered_json(opened.tokenizer->kind()) : nlohmann::ordered_json();
    j["tokenizer_source"] = opened.tokenizerSource.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(opened.tokenizerSource);
    return j;
}

std::string humanBytes(double bytes)
{
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        ++u;
    }
    std::ostringstream s;
    s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << bytes << " " << units[u];
    return s.str();
}

int runInfo(const Arguments& args)
{
    const pipeline::OpenedModel opened = openModelArgument(args, ExecutionContext());
    const auto j = infoJson(opened);
    if (args.has("json")) {
        printJson(j);
        return 0;
    }
    const Model& m = *opened.model;
    const ModelConfig& c = m.config;
    std::cout << "model           " << m.source.string() << " (" << m.format << ")\n"
              << "architecture    " << architectureInfo(c.architecture).displayName << ", " << c.layers << " layers, hidden "
              << c.hidden << ", ffn " << c.ffn << "\n"
              << "attention       " << c.attentionKind() << ": " << c.heads << " heads, " << c.kvHeads << " KV heads, head size "
              << c.headDim << "\n"
              << "vocabulary      " << c.vocab << " ids, context " << c.maxPositions << "\n"
              << "parameters      " << m.parameterCount() << " (" << j["weight_dtype"].get<std::string>() << ", "
              << humanBytes(static_cast<double>(m.weightBytes())) << ")\n";
    if (j.contains("tensor_types")) {
        std::string types;
        for (auto it = j["tensor_types"].begin(); it != j["tensor_types"].end(); ++it)
            types += (types.empty() ? "" : ", ") + it.key() + " x" + std::to_string(it.value().get<std::int64_t>());
        std::cout << "stored as       " << (j.contains("quantization") ? j["quantization"].get<std::string>() + ": " : "") << types
                  << " (dequantised on load; convert --dtype f32|f16|bf16 chooses the export's)\n";
    }
    std::cout
              << "KV cache        " << c.kvElementsPerToken() << " elements per token = "
              << humanBytes(static_cast<double>(c.kvElementsPerToken() * 2)) << " in BF16, "
              << humanBytes(static_cast<double>(c.kvElementsPerToken() * 4)) << " in F32\n"
              << "RoPE            theta " << c.rope.theta << ", stored " << m.sourceRopeLayout << "\n"
              << "tokenizer       " << (opened.tokenizer ? opened.tokenizer->kind() + " (" + opened.tokenizerSource + ")" : "none")
              << "\n";
    if (!j["conversion_supported"].get<bool>() && j.contains("conversion_unsupported_reason"))
        std::cout << "conversion      not supported yet: " << j["conversion_unsupported_reason"].get<std::string>() << "\n";
    return 0;
}

} // namespace

CommandSpec infoCommand()
{
    return {"info", "[MODEL] [--tokenizer F] [--json]", "describe a checkpoint: shape, parameters, attention kind, KV cache per token", "",
            {demoOption(), tokenizerOption(), jsonOption()}, 1, runInfo};
}

} // namespace mla::cli
