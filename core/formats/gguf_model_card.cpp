#include "formats/gguf_model_card.h"

#include "util/number_text.h"
#include "util/version.h"

#include <sstream>

namespace mla {
namespace {

// A path as a shell word: quoted when it holds anything but the usual file-name characters.
std::string shellWord(const std::string& s)
{
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/+=:@") == std::string::npos)
        return s;
    std::string quoted = "'";
    for (char c : s)
        quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

std::string jsString(const std::string& s)
{
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\';
        out += c;
    }
    return out + "\"";
}

} // namespace

std::string ggufModelCardMarkdown(const GgufModelCardInfo& info)
{
    const std::string file = shellWord(info.file.string());
    const std::string prompt = shellWord(info.prompt);
    std::ostringstream md;
    md << "# " << info.name << " (GGUF for llama.cpp)\n\n";
    md << "Written by " << kToolName << " " << kVersion << " from " << info.source << " as llama.cpp's `"
       << info.architecture << "` architecture, weights in " << ggmlTypeTraits(info.weights).name << ".";
    if (!info.conversion.empty())
        md << " " << info.conversion;
    md << "\n\n";
    if (info.kvValuesPerToken > 0 && info.sourceKvValuesPerToken == info.kvValuesPerToken) {
        md << "KV cache: " << info.kvValuesPerToken << " values per token over all layers.\n\n";
    } else if (info.kvValuesPerToken > 0 && info.sourceKvValuesPerToken > 0) {
        const double saving = 1.0 - static_cast<double>(info.kvValuesPerToken) / static_cast<double>(info.sourceKvValuesPerToken);
        md << "KV cache: " << info.kvValuesPerToken << " values per token over all layers instead of the source's "
           << info.sourceKvValuesPerToken << " (" << fixedDigits(100.0 * saving, 1) << "% less)";
        if (info.architecture == "deepseek2")
            md << "; llama.cpp's `deepseek2` caches the normalised latent and the shared rotated key (`kv_lora_rank + "
                  "rope` per layer) and absorbs the up projections into the query and output";
        md << ".\n\n";
    }

    md << "## Run it\n\n";
    md << "llama.cpp (`llama-cli` and `llama-server` from a llama.cpp release or build):\n\n```sh\n";
    md << "llama-cli -m " << file << " -p " << prompt << " -n 64 --temp 0\n";
    md << "llama-server -m " << file << " --port 8080\n```\n\n";
    md << "node-llama-cpp (the version the workbench's tests run, with its prebuilt llama.cpp):\n\n```sh\n";
    md << "npx -y node-llama-cpp@3.21.1 complete --model " << file << " --text " << prompt << " --maxTokens 64\n```\n\n";
    md << "```js\nimport {getLlama} from \"node-llama-cpp\";\n"
          "const llama = await getLlama();\n"
          "const model = await llama.loadModel({modelPath: " << jsString(info.file.string()) << "});\n"
          "const sequence = (await model.createContext()).getSequence();\n"
          "for await (const token of sequence.evaluate(model.tokenize(" << jsString(info.prompt) << "), {temperature: 0}))\n"
          "    process.stdout.write(model.detokenize([token]));\n```\n\n";

    if (info.quality) {
        const GgufQuality& q = *info.quality;
        md << "## Quality against the source\n\n";
        md << "Measured by our engine against the source";
        if (!q.measuredOn.empty())
            md << ": " << q.measuredOn;
        else
            md << " on " << q.sequences << " sequences (" << q.tokens << " predicted tokens)";
        md << ".\n\n| measure | value |\n|---|---|\n";
        md << "| perplexity, source | " << fixedDigits(q.sourcePerplexity, 3) << " |\n";
        md << "| perplexity, this file | " << fixedDigits(q.exportPerplexity, 3) << " |\n";
        md << "| KL(source ‖ this file), nats per token | " << fixedDigits(q.kl, 4) << " |\n";
        md << "| top-1 agreement with the source | " << fixedDigits(q.top1Agreement, 3) << " |\n\n";
    }
    if (!info.notes.empty()) {
        md << "## Notes\n\n";
        for (const auto& note : info.notes)
            md << "- " << note << "\n";
        md << "\n";
    }
    return md.str();
}

} // namespace mla
