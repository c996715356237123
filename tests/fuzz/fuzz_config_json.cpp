// libFuzzer target: a Hugging Face config.json (and its mha2mla block) into a ModelConfig, then everything the CLI's
// `info` derives from a config alone: validation, KV accounting, the tensor plan and the config written on export.
#include "fuzz_support.h"

#include "model/model_config.h"
#include "model/tensor_plan.h"
#include "util/error.h"
#include "util/json_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // As the readers do: nesting is checked before parsing (a deep document would overflow every recursive walk).
    try {
        mla::checkJsonNesting(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    } catch (const mla::Error&) {
        return 0;
    }
    const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr, false);
    if (json.is_discarded())
        return 0; // not JSON: readJsonFile reports that, nlohmann's parser is not ours to fuzz
    try {
        const mla::ModelConfig config = mla::configFromHuggingFace(json, "config.json");
        config.validate("config.json");
        (void)config.attentionKind();
        (void)config.kvElementsPerToken();
        for (std::int64_t l = 0; l < config.layers; ++l)
            (void)config.kvElementsPerTokenInLayer(l);
        (void)mla::tensorPlan(config).size();
        (void)mla::dumpJson(mla::configToHuggingFace(config));
    } catch (const mla::Error&) {
    }
    return 0;
}
