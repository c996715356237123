// The ablations behind docs/results.md's DeepSeek-V3 columns (tests/tools/deepseek_results.py runs it): the deepseek-v3
// target converted in memory with and without its latent norm (kv_a_layernorm), calibrated as the CLI's default
// (16 sequences of 256 tokens sampled from the model, seed 1) with the given preset, each compared with the original
// on the evaluation ids (perplexity, KL(original || converted), top-1 agreement). The variant without the norm cannot
// be written (no engine runs it); it isolates what the norm costs.
//   deepseek_ablation MODEL IDS [--preset best|paper] [--kv-saving F] [--without-norm-only]
#include "analysis/calibration.h"
#include "backend/compute_backend.h"
#include "conversion/deepseek_converter.h"
#include "conversion/presets.h"
#include "engine/evaluation.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <cstdio>
#include <string>
#include <vector>

using namespace mla;

int main(int argc, char** argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: deepseek_ablation MODEL IDS [--preset best|paper] [--kv-saving F] [--without-norm-only]\n");
        return 2;
    }
    try {
        const Model original = loadModel(argv[1]);
        const TokenSequences eval = readIdSequences(argv[2]);
        ConversionSettings settings;
        std::vector<bool> norms{true, false};
        for (int i = 3; i < argc; ++i) {
            const std::string flag = argv[i];
            if (flag == "--without-norm-only")
                norms = {false};
            else if (flag == "--preset" && i + 1 < argc)
                applyPreset(argv[++i], settings);
            else if (flag == "--kv-saving" && i + 1 < argc)
                settings.targetSaving = std::stod(argv[++i]);
            else
                throw Error("unknown argument " + flag);
        }
        settings.target = ConversionTarget::DeepSeekV3;
        const Transformer reference(original);
        const std::unique_ptr<Tokenizer> tokenizer; // sampled calibration needs none
        const CalibrationSet calibration = prepareCalibration(cpuBackend(), reference, tokenizer.get(), CalibrationOptions());
        std::printf("{\"model\": \"%s\", \"variants\": [", argv[1]);
        bool first = true;
        for (bool norm : norms) {
            DeepSeekConversionOptions options;
            options.latentNorm = norm;
            const DeepSeekConversion d = convertToDeepSeek(cpuBackend(), original, settings, calibration, {}, options);
            const ComparisonResult r = compareModels(cpuBackend(), Transformer(d.model), reference, eval);
            const auto& a = *d.model.config.deepseek;
            std::printf("%s{\"latent_norm\": %s, \"kv_lora_rank\": %lld, \"qk_rope_head_dim\": %lld, \"rope_theta\": %.9g, "
                        "\"ppl\": %.9g, \"reference_ppl\": %.9g, \"kl\": %.9g, \"top1\": %.9g, \"kv\": %lld}",
                        first ? "" : ", ", norm ? "true" : "false", static_cast<long long>(a.kvLoraRank),
                        static_cast<long long>(a.ropeDim), d.model.config.rope.theta, r.model.ppl(), r.reference.ppl(), r.kl,
                        r.top1Agreement, static_cast<long long>(d.model.config.kvElementsPerToken()));
            std::fflush(stdout);
            first = false;
        }
        std::printf("]}\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "deepseek_ablation: %s\n", e.what());
        return 1;
    }
}
