#pragma once

#include "formats/gguf_quantize.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mla {

// Quality of an export measured against its source (perplexity, KL(source || export) in nats per token, top-1
// agreement), on `sequences` sequences of `tokens` predicted tokens in all.
struct GgufQuality {
    double sourcePerplexity = 0.0;
    double exportPerplexity = 0.0;
    double kl = 0.0;
    double top1Agreement = 0.0;
    std::int64_t tokens = 0;
    std::int64_t sequences = 0;
    std::string measuredOn; // what was measured on which sequences (a sentence); empty: "on N sequences (T tokens)"
};

struct GgufModelCardInfo {
    std::string name;
    std::filesystem::path file;          // as the user will name it in the commands
    std::string architecture;            // general.architecture
    GgmlType weights = GgmlType::F32;
    std::string source;                  // the model it was written from
    std::string conversion;              // one line on how it was converted, empty for an unconverted model
    std::int64_t kvValuesPerToken = 0;   // KV cache values per token over all layers, as llama.cpp caches them
    std::int64_t sourceKvValuesPerToken = 0;
    std::optional<GgufQuality> quality;
    std::vector<std::string> notes;
    std::string prompt = "Once upon a time";
};

// The model card of a GGUF export (Markdown): what it is, the exact commands to run it in llama.cpp
// (llama-cli, llama-server) and node-llama-cpp (its CLI and its API, the version the tests pin), the KV cache it
// saves, and its measured quality against the source. The exporter stores it under mla_workbench.model_card.
std::string ggufModelCardMarkdown(const GgufModelCardInfo& info);

} // namespace mla
