#include "conversion/deepseek_export.h"

#include "util/version.h"

#include <sstream>

namespace mla {

nlohmann::ordered_json deepSeekExportConfigJson(const Model& source, const ModelConfig& converted)
{
    nlohmann::ordered_json j = deepSeekConfigToHuggingFace(converted);
    if (source.sourceConfigJson && source.sourceConfigJson->is_object()) {
        const auto pad = source.sourceConfigJson->find("pad_token_id");
        if (pad != source.sourceConfigJson->end() && pad->is_number_integer())
            j["pad_token_id"] = pad->get<std::int64_t>();
    }
    nlohmann::ordered_json provenance = {{"target", "deepseek-v3"}};
    if (!source.config.deepseek) { // written straight from the original model
        provenance["source_architecture"] = source.config.architecture;
        provenance["source_rope_theta"] = source.config.rope.theta;
    }
    provenance["tool"] = std::string(kToolName);
    provenance["tool_version"] = std::string(kVersion);
    j["mla_workbench"] = provenance;
    return j;
}

nlohmann::ordered_json deepSeekExportJson(const DeepSeekDetails& e, const ModelConfig& c, const ModelConfig& original,
                                          const ExportReport& written, const SanityReport* check)
{
    const DeepSeekAttentionConfig& a = *c.deepseek;
    nlohmann::ordered_json j;
    j["attention"] = "mla";
    j["target"] = "deepseek-v3";
    j["model_type"] = c.architecture;
    j["kv_lora_rank"] = a.kvLoraRank;
    j["qk_rope_head_dim"] = a.ropeDim;
    j["qk_nope_head_dim"] = a.nopeDim;
    j["v_head_dim"] = a.valueDim;
    j["rope_theta"] = c.rope.theta;
    j["rope_theta_original"] = original.rope.theta;
    j["widths_origin"] = e.widths.origin;
    if (!e.widths.candidates.empty()) {
        nlohmann::ordered_json cands = nlohmann::ordered_json::array();
        for (const auto& cand : e.widths.candidates)
            cands.push_back({{"qk_rope_head_dim", cand.ropeDim}, {"kv_lora_rank", cand.kvLoraRank}, {"cost", cand.cost}});
        j["width_candidates"] = cands;
    }
    j["kv_elements_per_token"] = c.kvElementsPerToken();
    j["kv_elements_per_token_original"] = original.kvElementsPerToken();
    j["kv_saving"] = 1.0 - static_cast<double>(c.kvElementsPerToken()) / static_cast<double>(original.kvElementsPerToken());
    j["flashmla_shape"] = a.kvLoraRank == 512 && a.ropeDim == 64;
    j["vllm_mla_kernels"] = a.kvLoraRank + a.ropeDim == 576 || a.kvLoraRank + a.ropeDim == 320;
    j["dtype"] = std::string(dtypeName(written.dtype));
    j["bytes_written"] = written.bytesWritten;
    j["calibration"] = {{"description", e.calibrationDescription}, {"tokens", e.calibrationTokens}};
    j["rope_context"] = e.ropeContext;
    j["rope_predicted_loss"] = e.rope.cost;
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const DeepSeekLayerReport& r : e.layers) {
        nlohmann::ordered_json slots = nlohmann::ordered_json::array();
        for (const auto& s : r.ropeSlots)
            slots.push_back({{"pair", s.pair}, {"frequency", s.frequency}, {"ladder_frequency", s.ladder}, {"energy_share", s.energy}});
        layers.push_back({{"rope_slots", slots},
                          {"rope_predicted_loss", r.ropeCost},
                          {"latent_residual_without_norm", r.latentResidualNoNorm},
                          {"latent_residual_norm_scaled", r.latentResidualNormScaled},
                          {"latent_residual_norm_fitted", r.latentResidualNormFitted},
                          {"query_bias_residual", r.queryBiasResidual},
                          {"key_bias_residual", r.keyBiasResidual},
                          {"value_bias_share", r.valueBiasShare},
                          {"output_error_initial", r.outputErrorInitial},
                          {"output_error_final", r.outputErrorFinal},
                          {"balanced", r.balanced}});
    }
    j["layers"] = layers;
    if (check)
        j["check"] = {{"original_ppl", check->originalPpl}, {"converted_ppl", check->convertedPpl}, {"kl", check->kl},
                      {"top1_agreement", check->top1Agreement}, {"evaluated_tokens", check->evaluatedTokens},
                      {"original_kv_bytes_per_token", check->originalKvBytesPerToken},
                      {"converted_kv_bytes_per_token", check->convertedKvBytesPerToken},
                      {"kv_cache", check->withCache.format},
                      {"kv_cache_quality", {{"ppl", check->withCache.ppl}, {"kl", check->withCache.kl},
                                            {"top1_agreement", check->withCache.top1Agreement},
                                            {"kv_bytes_per_token", check->withCache.kvBytesPerToken}}},
                      {"original_bf16_kv_bytes_per_token", check->originalBf16KvBytesPerToken},
                      {"combined_kv_saving", check->combinedSaving()}};
    return j;
}

std::string deepSeekExportSummary(const DeepSeekDetails& e, const ModelConfig& c, const ModelConfig& original,
                                  const SanityReport* check)
{
    const DeepSeekAttentionConfig& a = *c.deepseek;
    std::ostringstream s;
    s << "DeepSeek-V3 layout (model_type deepseek_v3): kv_lora_rank " << a.kvLoraRank << ", qk_rope_head_dim " << a.ropeDim
      << " (one shared RoPE head, rope_theta " << c.rope.theta << "), qk_nope_head_dim " << a.nopeDim << ", v_head_dim "
      << a.valueDim << "; widths " << e.widths.origin << "\n";
    for (std::size_t l = 0; l < e.layers.size(); ++l) {
        const auto& r = e.layers[l];
        s << "  layer " << l << ": attention error " << r.outputErrorInitial << " -> " << r.outputErrorFinal
          << ", latent residual " << r.latentResidualNoNorm << " without norm, " << r.latentResidualNormFitted
          << " through the norm (fitted)\n";
    }
    s << "KV cache per token: " << original.kvElementsPerToken() << " -> " << c.kvElementsPerToken() << " elements ("
      << 100.0 * (1.0 - static_cast<double>(c.kvElementsPerToken()) / static_cast<double>(original.kvElementsPerToken()))
      << "% saved)\n";
    if (a.kvLoraRank + a.ropeDim != 576 && a.kvLoraRank + a.ropeDim != 320)
        s << "note: vLLM's MLA kernels take kv_lora_rank + qk_rope_head_dim of 576 or 320 only (this model: "
          << a.kvLoraRank + a.ropeDim << "); see README.md for how vLLM runs it\n";
    if (check)
        s << "check: perplexity " << check->originalPpl << " -> " << check->convertedPpl << ", KL " << check->kl
          << " nats/token, top-1 agreement " << check->top1Agreement << " (in README.md)\n";
    return s.str();
}

} // namespace mla
