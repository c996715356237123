#include "pipeline/export_gguf.h"

#include "conversion/settings_validation.h"
#include "formats/gguf_writer.h"
#include "util/error.h"

#include <sstream>

namespace mla::pipeline {
namespace {

// One tokenizer rule (pipeline::openModel): the tokenizer the model was opened with is the one embedded.
std::optional<std::filesystem::path> openedTokenizer(const OpenedModel& model, const GgufExportOptions& options)
{
    if (options.tokenizerFile)
        return options.tokenizerFile;
    if (!model.tokenizerSource.empty() && model.tokenizerSource != "embedded (GGUF)")
        return std::filesystem::path(model.tokenizerSource);
    return std::nullopt;
}

void requireGgufTarget(const ConversionSettings& settings)
{
    if (settings.target != ConversionTarget::DeepSeekV3)
        throw Error("the MHA2MLA layout has no llama.cpp architecture: convert with the DeepSeek-V3 target "
                    "(--target deepseek-v3), which llama.cpp runs as its deepseek2 architecture with a latent cache");
}

std::string conversionSummary(const ConversionOutcome& conversion, const ModelConfig& original)
{
    const ModelConfig& c = conversion.plan.converted;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    std::ostringstream s;
    s << "Converted from " << original.architecture << " (" << original.heads << " query heads, " << original.kvHeads
      << " key/value heads of " << original.headDim << ") to Multi-head Latent Attention in the DeepSeek-V3 layout: "
      << "kv_lora_rank " << a.kvLoraRank << ", one shared RoPE head of " << a.ropeDim << " dims (rope_theta "
      << c.rope.theta << "), qk_nope_head_dim " << a.nopeDim << ", v_head_dim " << a.valueDim;
    if (conversion.deepSeek)
        s << "; widths " << conversion.deepSeek->widths.origin << ", fitted layer by layer on "
          << conversion.deepSeek->calibrationTokens << " calibration tokens";
    s << ".";
    return s.str();
}

} // namespace

GgufExportReport exportGguf(const OpenedModel& model, const GgufExportOptions& options, const ExecutionContext& context)
{
    if (!model.model)
        throw Error("internal: GGUF export of no model");
    GgufExportOptions resolved = options;
    resolved.tokenizerFile = openedTokenizer(model, options);
    return mla::exportGguf(*model.model, resolved, context.job());
}

GgufExportReport exportConversionGguf(const OpenedModel& original, const ConversionOutcome& conversion,
                                      const GgufExportOptions& options, const std::optional<CheckOutcome>& measured,
                                      const ExecutionContext& context)
{
    if (!conversion.converted || !original.model)
        throw Error("internal: nothing converted in memory to export");
    requireGgufTarget(conversion.plan.settings);
    const ModelConfig& source = original.model->config;
    const ModelConfig& c = conversion.plan.converted;
    const DeepSeekAttentionConfig& a = *c.deepseek;
    GgufExportOptions resolved = options;
    resolved.tokenizerFile = openedTokenizer(original, options);
    if (resolved.name.empty())
        resolved.name = original.model->source.filename().string() + " (MLA)";
    resolved.conversionSummary = conversionSummary(conversion, source);
    resolved.sourceKvValuesPerToken = source.kvElementsPerToken();
    auto add = [&](const std::string& key, GgufValue value) { resolved.extraMetadata.emplace_back("mla_workbench." + key, std::move(value)); };
    add("conversion.target", ggufString("deepseek-v3"));
    add("conversion.source_architecture", ggufString(source.architecture));
    add("conversion.kv_lora_rank", ggufU32(static_cast<std::uint32_t>(a.kvLoraRank)));
    add("conversion.qk_rope_head_dim", ggufU32(static_cast<std::uint32_t>(a.ropeDim)));
    add("conversion.rope_theta", ggufF32(static_cast<float>(c.rope.theta)));
    add("conversion.kv_values_per_token", ggufU64(static_cast<std::uint64_t>(c.kvElementsPerToken())));
    add("conversion.source_kv_values_per_token", ggufU64(static_cast<std::uint64_t>(source.kvElementsPerToken())));
    if (!conversion.plan.settings.preset.empty())
        add("conversion.preset", ggufString(conversion.plan.settings.preset));
    if (conversion.deepSeek) {
        add("conversion.widths_origin", ggufString(conversion.deepSeek->widths.origin));
        add("conversion.calibration", ggufString(conversion.deepSeek->calibrationDescription));
        add("conversion.calibration_tokens", ggufU64(static_cast<std::uint64_t>(conversion.deepSeek->calibrationTokens)));
    }
    if (measured) {
        const SanityReport& r = measured->report;
        GgufQuality q;
        q.sourcePerplexity = r.originalPpl;
        q.exportPerplexity = r.convertedPpl;
        q.kl = r.kl;
        q.top1Agreement = r.top1Agreement;
        q.tokens = r.evaluatedTokens;
        q.measuredOn = "the converted model in memory (float32, before its weights were written to this file), on "
                       + measured->description;
        resolved.quality = q;
    }
    return mla::exportGguf(*conversion.converted, resolved, context.job());
}

GgufConversionOutcome convertToGguf(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                    const GgufExportOptions& options, const std::optional<CheckOptions>& check,
                                    const ExecutionContext& context)
{
    if (!model.model)
        throw Error("internal: conversion of no model");
    // Refused here, before any calibration or conversion: the target, the settings, the destination, the tokenizer.
    requireGgufTarget(settings.conversion);
    validateConversionSettings(model.model->config, settings.conversion);
    GgufExportOptions resolved = options;
    resolved.tokenizerFile = openedTokenizer(model, options);
    requireGgufDestination(resolved, *model.model);
    (void)defaultGgufTokenizer(*model.model, resolved.tokenizerFile);

    GgufConversionOutcome out;
    out.conversion = convertInMemory(model, std::move(analysis), settings, check ? context.slice(0.0, 0.7) : context.slice(0.0, 0.9));
    if (check)
        out.check = pipeline::check(model, *out.conversion.converted, *check, context.slice(0.7, 0.9));
    out.written = exportConversionGguf(model, out.conversion, options, out.check, context.slice(0.9, 1.0));
    return out;
}

} // namespace mla::pipeline
