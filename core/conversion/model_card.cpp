#include "conversion/model_card.h"

#include "analysis/kv_accounting.h"
#include "util/error.h"
#include "util/staged_output.h"
#include "util/version.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace mla {
namespace {

std::string fixed(double v, int digits)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, v);
    return text;
}

std::string general(double v)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.6g", v);
    return text;
}

std::string onOff(bool v)
{
    return v ? "yes" : "no";
}

std::string list(const std::vector<int>& v)
{
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i)
        s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

std::string list(const std::vector<std::int64_t>& v)
{
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i)
        s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

// Markdown table cells must not contain a bare '|' or a line break.
std::string cell(std::string s)
{
    std::string out;
    for (char c : s) {
        if (c == '|')
            out += "\\|";
        else if (c == '\n' || c == '\r')
            out += ' ';
        else
            out += c;
    }
    return out;
}

// Generated text inside a fenced block: one line, and no backtick run that would close the fence.
std::string fenced(const std::string& s)
{
    std::string out;
    for (char c : s)
        out += c == '`' ? '\'' : (c == '\n' || c == '\r') ? ' ' : c;
    return out;
}

std::string modelName(const std::string& path)
{
    std::string p = path;
    while (!p.empty() && p.back() == '/')
        p.pop_back();
    const auto slash = p.find_last_of('/');
    std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
    const auto dot = name.find_last_of('.');
    if (dot != std::string::npos && dot > 0)
        name = name.substr(0, dot);
    return name.empty() ? "model" : name;
}

void writeSettings(std::ostringstream& md, const ModelCardInfo& info)
{
    const ConversionSettings& s = info.settings;
    md << "## Conversion settings\n\n"
       << "| setting | value |\n|---|---|\n"
       << "| RoPE pair selection (`--rope-strategy`) | " << ropeStrategyName(s.strategy) << " |\n"
       << "| RoPE pairs kept per head (`--rope-pairs`) | "
       << (s.ropePairs < 0 ? "default (head_dim / 16, at least 1)" : std::to_string(s.ropePairs)) << " |\n"
       << "| RoPE pairs per layer | " << (s.ropePairsPerLayer.empty() ? "same for every layer" : list(s.ropePairsPerLayer)) << " |\n"
       << "| uniform start pair (`--uniform-start`) | " << s.uniformStart << " |\n"
       << "| latent method (`--svd`) | " << latentMethodName(s.method) << " |\n"
       << "| latent width d_c (`--latent-dim`) | "
       << (s.latentDim < 0 ? "from the KV saving target" : std::to_string(s.latentDim)) << " |\n"
       << "| latent width per layer | " << (s.latentPerLayer.empty() ? "same for every layer" : list(s.latentPerLayer)) << " |\n"
       << "| KV saving target (`--kv-saving`) | " << fixed(100.0 * s.targetSaving, 1) << "% |\n"
       << "| singular values (`--sigma`) | " << sigmaPlacementName(s.sigma) << " |\n"
       << "| activation-aware decomposition | " << onOff(s.activationAware) << " |\n"
       << "| key/value energy balance | " << onOff(s.balanceKeyValue) << (s.chooseBalance ? " (chosen per layer)" : "") << " |\n"
       << "| least-squares refit | " << onOff(s.refit) << (s.refit ? " (ridge " + general(s.refitRidge) + ")" : "") << " |\n"
       << "| per-layer budget allocation | " << onOff(s.allocate)
       << (s.allocate && s.kvBudget > 0 ? " (" + std::to_string(s.kvBudget) + " elements per token)" : "") << " |\n"
       << "| preset | " << (s.preset.empty() ? "none" : cell(s.preset)) << " |\n"
       << "| calibration | "
       << (info.calibration.empty() ? "none (the selection needs no scores)"
                                    : cell(info.calibration) + " (" + std::to_string(info.calibrationTokens) + " tokens)")
       << " |\n\n";

    const ModelConfig& c = info.converted;
    md << "Per layer (pair j = dims (j, j + head_dim/2) of a head, Hugging Face half layout):\n\n"
       << "| layer | pairs kept per head | kept pairs of KV head 0 | latent width | KV elements per token |\n"
       << "|---|---|---|---|---|\n";
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const MlaLayerConfig& m = c.mla->layers[static_cast<std::size_t>(l)];
        md << "| " << l << " | " << m.ropePairs() << " | " << (m.keptPairs.empty() ? "[]" : list(m.keptPairs[0])) << " | "
           << m.latentWidth() << (m.latentV > 0 && m.latentK > 0 ? " (" + std::to_string(m.latentK) + " + " + std::to_string(m.latentV) + ")" : "")
           << " | " << m.cacheElements(c.kvHeads, c.headDim) << " |\n";
    }
    md << "\n";
}

void writeKv(std::ostringstream& md, const ModelCardInfo& info)
{
    const KvAccount kv = kvAccount(info.original, *info.converted.mla);
    md << "## KV cache\n\n"
       << "| | original | converted |\n|---|---|---|\n"
       << "| elements per token (all layers) | " << kv.originalTotal << " | " << kv.convertedTotal << " |\n"
       << "| bytes per token, BF16 cache | " << general(kv.originalBytesPerToken(CacheFormat::BF16)) << " | "
       << general(kv.convertedBytesPerToken(CacheFormat::BF16)) << " |\n"
       << "| bytes per token, F32 cache | " << general(kv.originalBytesPerToken(CacheFormat::F32)) << " | "
       << general(kv.convertedBytesPerToken(CacheFormat::F32)) << " |\n\n"
       << "**KV saving: " << fixed(100.0 * kv.saving(), 1) << "%** (" << kv.originalTotal << " -> " << kv.convertedTotal
       << " cached elements per token).\n\n";
}

void writeMetrics(std::ostringstream& md, const ModelCardInfo& info)
{
    md << "## Measured quality\n\n";
    if (!info.metrics) {
        md << "Not measured at export. Run `mla-workbench-cli convert ... --check`, or compare with "
              "`mla-workbench-cli eval FOLDER --ids FILE --reference ORIGINAL`.\n\n";
        return;
    }
    const SanityReport& r = *info.metrics;
    if (!info.metricsDescription.empty())
        md << "Measured on " << info.metricsDescription
           << (info.metricsOnWrittenWeights ? ", with the weights as written here.\n\n"
                                            : ", on the converted model before it was written (the files hold it in "
                                                  + std::string(dtypeName(info.dtype)) + ").\n\n");
    md << "| metric | original | converted |\n|---|---|---|\n"
       << "| perplexity | " << general(r.originalPpl) << " | " << general(r.convertedPpl) << " |\n"
       << "| KL(original \\|\\| converted), nats per token | | " << general(r.kl) << " |\n"
       << "| top-1 agreement with the original | | " << fixed(100.0 * r.top1Agreement, 2) << "% |\n"
       << "| KV cache bytes per token (measured) | " << general(r.originalKvBytesPerToken) << " | "
       << general(r.convertedKvBytesPerToken) << " |\n"
       << "| evaluated tokens | " << r.evaluatedTokens << " | |\n\n";
    for (const auto& g : r.generations) {
        md << "Greedy continuation" << (g.prompt.empty() ? " from BOS" : " of \"" + cell(g.prompt) + "\"")
           << (g.firstDifference < 0 ? " (identical)" : " (first difference at token " + std::to_string(g.firstDifference) + ")")
           << ":\n\n```text\noriginal:  " << fenced(g.originalText) << "\nconverted: " << fenced(g.convertedText) << "\n```\n\n";
    }
}

void writeHeal(std::ostringstream& md, const ModelCardInfo& info)
{
    if (!info.heal)
        return;
    const HealCardInfo& h = *info.heal;
    md << "## Healing\n\n"
       << "After the conversion the converted attention was healed by block-wise distillation (" << kToolName
       << " `convert --heal`): layer by layer, in order, trained so that the block output matches the original model's "
          "on the converted model's own hidden states, then frozen.\n\n"
       << "| setting | value |\n|---|---|\n"
       << "| start | " << cell(h.start) << (h.startChoice.empty() ? "" : " (" + cell(h.startChoice) + ")") << " |\n"
       << "| steps per layer (`--heal-steps`) | " << h.steps << " |\n"
       << "| learning rate (`--heal-lr`) | " << cell(h.learningRate) << " |\n"
       << "| data | " << cell(h.data) << " |\n"
       << "| tokens (train + held out) | " << h.trainTokens << " + " << h.heldOutTokens << " |\n"
       << "| seed (`--heal-seed`) | " << h.seed << " |\n"
       << "| layers healed | " << h.layersHealed << " |\n";
    if (h.klBefore && h.klAfter)
        md << "| held-out KL(original \\|\\| model), nats per token | " << general(*h.klBefore) << " before, "
           << general(*h.klAfter) << " after |\n";
    md << "| time | " << fixed(h.seconds, 1) << " s |\n\n";
}

} // namespace

std::string modelCardMarkdown(const ModelCardInfo& info)
{
    const ModelConfig& o = info.original;
    const ModelConfig& c = info.converted;
    std::ostringstream md;
    md << "---\ntags:\n- mla\n- mha2mla\n- mla-workbench\n---\n\n"
       << "# " << modelName(info.sourceModel) << " with Multi-head Latent Attention\n\n"
       << "This folder holds `" << cell(info.sourceModel) << "` converted from "
       << (o.kvHeads == o.heads ? "multi-head" : "grouped-query") << " attention to Multi-head Latent Attention (MLA) by "
       << kToolName << " " << kVersion << ", following MHA2MLA: partial RoPE (only the selected frequency pairs keep their "
       << "rotation) and a low-rank joint key/value latent initialised from a singular value decomposition. No weights "
       << (info.heal ? "were trained beyond the healing described below; fine-tuning recovers more of the remaining gap.\n\n"
                     : "were trained; fine-tuning recovers most of the remaining gap.\n\n");

    md << "## Source model\n\n"
       << "| | |\n|---|---|\n"
       << "| path | `" << cell(info.sourceModel) << "` |\n"
       << "| format | " << (info.sourceFormat.empty() ? "unknown" : info.sourceFormat) << " |\n"
       << "| architecture | " << o.architecture << " (" << o.attentionKind() << ") |\n"
       << "| layers | " << o.layers << " |\n"
       << "| hidden size | " << o.hidden << " |\n"
       << "| attention heads / KV heads | " << o.heads << " / " << o.kvHeads << " |\n"
       << "| head size | " << o.headDim << " |\n"
       << "| vocabulary | " << o.vocab << " |\n\n";

    writeSettings(md, info);
    writeKv(md, info);
    writeHeal(md, info);
    writeMetrics(md, info);

    md << "## Files\n\n"
       << "- `config.json`: the original config plus an `mha2mla` block (`partial_rope_version`, `rope_pairs_kept`, "
          "`svd_init_method`, `latent_dims`, `low_rank`, ...) that describes every layer.\n"
       << "- weights in " << dtypeName(info.dtype) << ": "
       << (info.shardBytes > 0 ? "shards `model-XXXXX-of-YYYYY.safetensors` of at most " + std::to_string(info.shardBytes >> 20)
                                     + " MiB with `model.safetensors.index.json`"
                               : std::string("`model.safetensors`"))
       << ".\n- tokenizer and generation files of the source model, copied unchanged where it had them.\n\n";

    md << "## Loading\n\n"
       << "The attention is `mla`: per layer, `q_proj` rows are reordered (every head's kept RoPE dims first), "
          "`k_r_proj` gives the rotated keys of the kept pairs, and `kv_proj.down_kv` / `kv_proj.up_k` / `kv_proj.up_v` "
          "(or `down_k` / `down_v` for split latents) hold the latent projections, as in the public MHA2MLA code. The "
          "KV cache holds the kept RoPE keys and the latent: "
       << c.kvElementsPerToken() << " elements per token.\n\n"
       << "- MLA Workbench: `mla-workbench-cli info FOLDER`, `mla-workbench-cli generate FOLDER --prompt \"...\"`, "
          "`mla-workbench-cli eval FOLDER --text FILE`.\n"
       << "- Hugging Face Transformers: load with the MHA2MLA modelling code, which reads the `mha2mla` block of "
          "`config.json` (stock Llama classes do not know the `mla` attention and would drop the latent tensors).\n";
    return md.str();
}

void writeModelCard(const std::filesystem::path& folder, const ModelCardInfo& info)
{
    StagedFile readme(folder / "README.md");
    {
        std::ofstream out(readme.path(), std::ios::binary | std::ios::trunc);
        out << modelCardMarkdown(info);
        if (!out.flush())
            throw Error(readme.path(), "write failed");
    }
    readme.commit();
}

} // namespace mla
