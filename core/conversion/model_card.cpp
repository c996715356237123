#include "conversion/model_card.h"

#include "analysis/kv_accounting.h"
#include "util/error.h"
#include "util/number_text.h"
#include "util/staged_output.h"
#include "util/version.h"

#include <fstream>
#include <sstream>

namespace mla {
namespace {

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

std::string decompositionCell(const ModelCardInfo& info)
{
    const ConversionSettings& s = info.settings;
    if (s.decomposition == DecompositionMethod::Exact)
        return "exact";
    std::string text = "randomized, " + std::to_string(s.powerIterations) + " power iteration" + (s.powerIterations == 1 ? "" : "s");
    if (const auto& c = info.decompositionCheck)
        text += "; " + cell(decompositionCheckSummary(*c));
    return text;
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
       << "| KV saving target (`--kv-saving`) | " << fixedDigits(100.0 * s.targetSaving, 1) << "% |\n"
       << "| singular values (`--sigma`) | " << sigmaPlacementName(s.sigma) << " |\n"
       << "| latent decomposition (`--decomposition`) | " << decompositionCell(info) << " |\n"
       << "| activation-aware decomposition | " << onOff(s.activationAware) << " |\n"
       << "| key/value energy balance | " << onOff(s.balanceKeyValue) << (s.chooseBalance ? " (chosen per layer)" : "") << " |\n"
       << "| least-squares refit | " << onOff(s.refit) << (s.refit ? " (ridge " + significantDigits(s.refitRidge, 6) + ")" : "") << " |\n"
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
       << "| bytes per token, BF16 cache | " << significantDigits(kv.originalBytesPerToken(CacheFormat::BF16), 6) << " | "
       << significantDigits(kv.convertedBytesPerToken(CacheFormat::BF16), 6) << " |\n"
       << "| bytes per token, F32 cache | " << significantDigits(kv.originalBytesPerToken(CacheFormat::F32), 6) << " | "
       << significantDigits(kv.convertedBytesPerToken(CacheFormat::F32), 6) << " |\n";
    for (CacheFormat f : {CacheFormat::Int8, CacheFormat::Int4}) {
        const KvCacheFormat format = KvCacheFormat::withDefaultRope({f, kDefaultCacheGroupSize});
        md << "| bytes per token, " << kvCacheFormatName(format) << " cache (`--kv-cache " << cacheFormatName(f) << "`) | "
           << significantDigits(kv.originalBytesPerToken(format), 6) << " | " << significantDigits(kv.convertedBytesPerToken(format), 6) << " |\n";
    }
    md << "\n"
       << "**KV saving: " << fixedDigits(100.0 * kv.saving(), 1) << "%** (" << kv.originalTotal << " -> " << kv.convertedTotal
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
       << "| perplexity | " << significantDigits(r.originalPpl, 6) << " | " << significantDigits(r.convertedPpl, 6) << " |\n"
       << "| KL(original \\|\\| converted), nats per token | | " << significantDigits(r.kl, 6) << " |\n"
       << "| top-1 agreement with the original | | " << fixedDigits(100.0 * r.top1Agreement, 2) << "% |\n"
       << "| KV cache bytes per token (measured) | " << significantDigits(r.originalKvBytesPerToken, 6) << " | "
       << significantDigits(r.convertedKvBytesPerToken, 6) << " |\n"
       << "| evaluated tokens | " << r.evaluatedTokens << " | |\n\n";
    if (r.withCache.format != kvCacheFormatName(KvCacheFormat{})) {
        const CacheFormatQuality& q = r.withCache;
        md << "With the converted model's KV cache stored as " << q.format << " (the original's stays float32):\n\n"
           << "| metric | converted, f32 cache | converted, " << q.format << " cache |\n|---|---|---|\n"
           << "| perplexity | " << significantDigits(r.convertedPpl, 6) << " | " << significantDigits(q.ppl, 6) << " |\n"
           << "| KL(original \\|\\| converted), nats per token | " << significantDigits(r.kl, 6) << " | " << significantDigits(q.kl, 6) << " |\n"
           << "| top-1 agreement with the original | " << fixedDigits(100.0 * r.top1Agreement, 2) << "% | "
           << fixedDigits(100.0 * q.top1Agreement, 2) << "% |\n"
           << "| KV cache bytes per token (measured) | " << significantDigits(r.convertedKvBytesPerToken, 6) << " | " << significantDigits(q.kvBytesPerToken, 6)
           << " |\n\n";
    }
    if (r.originalBf16KvBytesPerToken > 0.0)
        md << "KV cache against the original with a BF16 cache (" << significantDigits(r.originalBf16KvBytesPerToken, 6)
           << " bytes per token): **" << fixedDigits(100.0 * r.combinedSaving(), 1) << "% saved** with the converted model's "
           << r.withCache.format << " cache (" << significantDigits(r.withCache.kvBytesPerToken, 6) << " bytes per token).\n\n";
    for (const auto& g : r.generations) {
        md << "Greedy continuation" << (g.prompt.empty() ? " from BOS" : " of \"" + cell(g.prompt) + "\"")
           << (g.firstDifference < 0 ? " (identical)" : " (first difference at token " + std::to_string(g.firstDifference) + ")")
           << ":\n\n```text\noriginal:  " << fenced(g.originalText) << "\nconverted: " << fenced(g.convertedText) << "\n```\n\n";
    }
}

void writeSource(std::ostringstream& md, const ModelCardInfo& info)
{
    const ModelConfig& o = info.original;
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
}

// The deepseek-v3 target (docs/deepseek-export.md): the layout stock engines serve, where it runs and how.
std::string deepSeekCardMarkdown(const ModelCardInfo& info)
{
    const ModelConfig& o = info.original;
    const ModelConfig& c = info.converted;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    const ConversionSettings& s = info.settings;
    const std::int64_t mlaHead = a.kvLoraRank + a.ropeDim;
    const bool vllmKernels = mlaHead == 576 || mlaHead == 320;
    std::ostringstream md;
    md << "---\ntags:\n- mla\n- deepseek_v3\n- mla-workbench\n---\n\n"
       << "# " << modelName(info.sourceModel) << " in the DeepSeek-V3 layout (Multi-head Latent Attention)\n\n"
       << "This folder holds `" << cell(info.sourceModel) << "` converted from "
       << (o.kvHeads == o.heads ? "multi-head" : "grouped-query") << " attention to Multi-head Latent Attention by "
       << kToolName << " " << kVersion << ", written in the DeepSeek-V3 checkpoint layout (`model_type: deepseek_v3`, "
       << "`DeepseekV3ForCausalLM`) that stock Hugging Face transformers, vLLM and SGLang load without custom code. "
       << "No weights were trained; fine-tuning recovers most of the remaining gap.\n\n";
    writeSource(md, info);

    md << "## Conversion\n\n"
       << "| setting | value |\n|---|---|\n"
       << "| target (`--target`) | deepseek-v3" << (s.flashMla ? " (`--flashmla`)" : "") << " |\n"
       << "| preset | " << (s.preset.empty() ? "none" : cell(s.preset)) << " |\n"
       << "| kv_lora_rank (latent, every layer) | " << a.kvLoraRank << " |\n"
       << "| qk_rope_head_dim (one RoPE key head shared by all heads) | " << a.ropeDim << " |\n"
       << "| qk_nope_head_dim / v_head_dim | " << a.nopeDim << " / " << a.valueDim << " |\n"
       << "| how the widths were chosen | " << (info.widthsOrigin.empty() ? "given" : cell(info.widthsOrigin)) << " |\n"
       << "| rope_theta (original) | " << significantDigits(c.rope.theta, 6) << " (" << significantDigits(o.rope.theta, 6) << ") |\n"
       << "| RoPE pair layout | interleaved (`rope_interleave: true`, pair i = dims 2i, 2i+1) |\n"
       << "| activation-aware decomposition | " << onOff(s.activationAware) << " |\n"
       << "| least-squares refit of o_proj | " << onOff(s.refit) << " |\n"
       << "| calibration | " << (info.calibration.empty() ? "none" : cell(info.calibration) + " (" + std::to_string(info.calibrationTokens) + " tokens)")
       << " |\n\n";

    md << "What is exact and what is approximated: the softmax-scale change from head size " << o.headDim << " to "
       << a.qkHeadDim() << " is folded into `q_proj` exactly; the per-KV-head RoPE pairs become the one shared rotated "
          "head through per-frequency principal components across KV heads (exact for the components kept), whose "
          "frequencies are placed on the ladder rope_theta^(-2i/" << a.ropeDim << ") (exact where a component's "
          "frequency lies on it); everything the shared head does not carry becomes position-free and goes through the "
          "latent; `kv_b_proj` is fitted by least squares to the RMS-normalised latent the engines compute "
          "(`kv_a_layernorm` is always applied). Per layer, measured on the calibration tokens:\n\n"
       << "| layer | RoPE energy lost (predicted) | latent residual, no norm | with norm, fitted | attention error |\n"
       << "|---|---|---|---|---|\n";
    for (std::size_t l = 0; l < info.deepSeekLayers.size(); ++l) {
        const DeepSeekLayerReport& r = info.deepSeekLayers[l];
        md << "| " << l << " | " << fixedDigits(100.0 * r.ropeCost, 2) << "% | " << significantDigits(r.latentResidualNoNorm, 6) << " | "
           << significantDigits(r.latentResidualNormFitted, 6) << " | " << significantDigits(r.outputErrorFinal, 6) << " |\n";
    }
    md << "\n";

    const std::int64_t ok = o.kvElementsPerToken(), ck = c.kvElementsPerToken();
    md << "## KV cache\n\n"
       << "| | original | converted |\n|---|---|---|\n"
       << "| elements per token (all layers) | " << ok << " | " << ck << " |\n"
       << "| bytes per token, BF16 cache | " << ok * 2 << " | " << ck * 2 << " |\n\n"
       << "**KV saving: " << fixedDigits(100.0 * (1.0 - static_cast<double>(ck) / static_cast<double>(ok)), 1) << "%** ("
       << a.kvLoraRank << " latent + " << a.ropeDim << " RoPE values per token and layer, absorbed form).\n\n";
    writeMetrics(md, info);

    md << "## Where it runs\n\n"
       << "- Hugging Face transformers (`DeepseekV3ForCausalLM`, no `trust_remote_code`):\n\n"
       << "  ```python\n  from transformers import AutoModelForCausalLM\n"
       << "  model = AutoModelForCausalLM.from_pretrained(\"FOLDER\")\n  ```\n\n"
       << "- vLLM: `vllm serve FOLDER`. "
       << (vllmKernels ? std::string("kv_lora_rank + qk_rope_head_dim = ") + std::to_string(mlaHead)
                             + " is a width vLLM's MLA kernels take, so vLLM caches the latent (the memory saving is real there)."
                       : std::string("vLLM's MLA kernels take kv_lora_rank + qk_rope_head_dim of 576 or 320 only; this model has ")
                             + std::to_string(mlaHead) + ", so start it with `VLLM_MLA_DISABLE=1 vllm serve FOLDER` (vLLM's expanded "
                             "DeepSeek attention: same outputs, full-size K/V cache). Convert with `--flashmla` (512 + 64) or "
                             "`--latent-dim` / `--rope-pairs` summing to 320 or 576 to get vLLM's latent cache.")
       << "\n- SGLang: `python -m sglang.launch_server --model-path FOLDER`.\n"
       << "- FlashMLA (vLLM and SGLang on Hopper GPUs): needs kv_lora_rank 512 and qk_rope_head_dim 64"
       << (a.kvLoraRank == 512 && a.ropeDim == 64 ? " (this model has them)." : " (this model does not; see `--flashmla`).")
       << "\n- MLA Workbench: `mla-workbench-cli info FOLDER` (attention: mla, " << ck << " elements per token), "
       << "`mla-workbench-cli generate FOLDER --prompt \"...\"`, `mla-workbench-cli eval FOLDER --reference ORIGINAL --text FILE`.\n\n";
    if (!info.hasHuggingFaceTokenizer)
        md << "The source model has no Hugging Face tokenizer (`tokenizer.json` / `tokenizer.model`), so none is in this "
              "folder: pass token ids to the engines, or add the tokenizer files of the source model before serving.\n\n";

    md << "## Files\n\n"
       << "- `config.json`: `model_type: deepseek_v3`, `q_lora_rank: null`, a dense MLP in every layer "
          "(`first_k_dense_replace` = `num_hidden_layers`), `rope_scaling: null`, and an `mla_workbench` provenance block.\n"
       << "- weights in " << dtypeName(info.dtype) << ": "
       << (info.shardBytes > 0 ? "shards `model-XXXXX-of-YYYYY.safetensors` of at most " + std::to_string(info.shardBytes >> 20)
                                     + " MiB with `model.safetensors.index.json`"
                               : std::string("`model.safetensors`"))
       << ", per layer `self_attn.q_proj`, `kv_a_proj_with_mqa`, `kv_a_layernorm`, `kv_b_proj`, `o_proj` and an explicit "
          "`lm_head.weight`.\n- tokenizer and generation files of the source model, copied unchanged where it had them.\n";
    return md.str();
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
        md << "| held-out KL(original \\|\\| model), nats per token | " << significantDigits(*h.klBefore, 6) << " before, "
           << significantDigits(*h.klAfter, 6) << " after |\n";
    md << "| time | " << fixedDigits(h.seconds, 1) << " s |\n\n";
}

} // namespace

std::string modelCardMarkdown(const ModelCardInfo& info)
{
    if (info.converted.deepseek)
        return deepSeekCardMarkdown(info);
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

    writeSource(md, info);
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
