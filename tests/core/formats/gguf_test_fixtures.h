#pragma once

// Shared by the GGUF export tests: a byte-level BPE tokenizer.json in each of the pre-tokenizer families llama.cpp
// names (GPT-2, Llama 3, Qwen2, SmolLM), with special and added tokens and a tokenizer_config.json carrying a chat
// template; and tiny random models of each architecture.

#include "common/test_support.h"

#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"
#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace mla::test {

// Merges written by hand for English text; merge k creates token 256 + k (pairs spelling a token twice keep the
// first id). Byte b is token b.
inline const std::vector<std::pair<std::string, std::string>>& fixtureMerges()
{
    static const std::vector<std::pair<std::string, std::string>> merges = {
        {"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0" "t", "he"}, {"i", "n"}, {"\xC4\xA0", "a"}, {"e", "r"}, {"o", "n"},
        {"\xC4\xA0", "s"}, {"r", "e"}, {"a", "t"}, {"e", "n"}, {"o", "u"}, {"i", "t"}, {"\xC4\xA0", "w"},
        {"\xC4\xA0", "c"}, {"i", "s"}, {"o", "r"}, {"\xC4\xA0", "o"}, {"e", "d"}, {"in", "g"}, {"\xC4\xA0", "l"},
        {"\xC4\xA0", "d"}, {"a", "n"}, {"\xC4\xA0", "m"}, {"\xC4\xA0", "p"}, {"l", "l"}, {"\xC4\xA0", "b"},
        {"\xC4\xA0", "f"}, {"\xC4\xA0", "h"}, {"\xC4\xA0" "o", "n"}, {"\xC4\xA0", "i"}, {"\xC4\xA0" "t", "o"},
        {"\xC4\xA0" "a", "nd"}, {"n", "d"}, {"\xC4\xA0", "1"}, {"1", "2"}, {"\xC4\xA0", "\xC4\xA0"},
        {"\xC4\xA0\xC4\xA0", "\xC4\xA0\xC4\xA0"}, {"'", "s"}, {"\xC4\x8A", "\xC4\x8A"}, {"\xC4\xA0" "w", "as"},
        {"a", "s"}, {"\xC4\xA0", "L"}, {"\xC4\xA0" "L", "ily"}, {"i", "ly"}, {"l", "y"}, {"\xC4\xA0" "s", "he"}, {"O", "n"}, {"On", "ce"},
        {"c", "e"},
        // Merges across the places where the pre-tokenizer families cut differently (a comma before a word, an
        // upper-case contraction, digit runs), so that each family encodes some probe text differently.
        {",", "t"}, {"'", "S"},
    };
    return merges;
}

inline constexpr const char* kFixturePreTokenizers[] = {"gpt-2", "llama-bpe", "qwen2", "smollm"};

// tokenizer.json (and tokenizer_config.json) for one pre-tokenizer family, written into `folder`.
inline std::filesystem::path writeBpeTokenizer(const std::filesystem::path& folder, const std::string& family)
{
    using nlohmann::json;
    std::filesystem::create_directories(folder);
    json vocab = json::object();
    for (int b = 0; b < 256; ++b)
        vocab[byteToUnicode()[static_cast<std::size_t>(b)]] = b;
    json merges = json::array();
    int next = 256;
    for (const auto& [a, b] : fixtureMerges()) {
        // Some pairs of the list spell the same token twice; the vocabulary keeps the first id.
        if (!vocab.contains(a + b))
            vocab[a + b] = next++;
        merges.push_back(family == "llama-bpe" ? json::array({a, b}) : json(a + " " + b));
    }
    const int endOfText = next++;
    const int imStart = next++;
    const int imEnd = next++;
    const int extra = next++;
    auto added = [](int id, const std::string& content, bool special) {
        return json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                    {"normalized", false}, {"special", special}};
    };
    json j;
    j["version"] = "1.0";
    j["added_tokens"] = json::array({added(endOfText, "<|endoftext|>", true), added(imStart, "<|im_start|>", true),
                                     added(imEnd, "<|im_end|>", true), added(extra, "<extra_word>", false)});
    j["normalizer"] = nullptr;
    const json byteLevelRegex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    const json byteLevelPlain = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
    auto split = [](std::string_view pattern) {
        return json{{"type", "Split"}, {"pattern", {{"Regex", std::string(pattern)}}}, {"behavior", "Isolated"}, {"invert", false}};
    };
    if (family == "gpt-2")
        j["pre_tokenizer"] = byteLevelRegex;
    else if (family == "llama-bpe")
        j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({split(kLlama3Pattern), byteLevelPlain})}};
    else if (family == "qwen2")
        j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({split(kQwen2Pattern), byteLevelPlain})}};
    else
        j["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, byteLevelRegex})}};
    j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
    j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                  {"ignore_merges", family == "llama-bpe"}, {"vocab", vocab}, {"merges", merges}};
    writeTextFile(folder / "tokenizer.json", j.dump(1));
    const json config = {
        {"bos_token", nullptr},
        {"eos_token", "<|im_end|>"},
        {"pad_token", "<|endoftext|>"},
        {"add_bos_token", false},
        {"chat_template", "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"},
    };
    writeTextFile(folder / "tokenizer_config.json", config.dump(1));
    return folder / "tokenizer.json";
}

inline int fixtureBpeVocabSize()
{
    int n = 256;
    nlohmann::json seen = nlohmann::json::object();
    for (const auto& [a, b] : fixtureMerges()) {
        if (!seen.contains(a + b)) {
            seen[a + b] = true;
            ++n;
        }
    }
    return n + 4;
}

// A tiny random model of one architecture, F32, written as a Hugging Face folder `dir / name`.
inline Model tinyModel(const std::filesystem::path& dir, const std::string& arch, std::int64_t vocab,
                       const std::string& name = {}, std::uint64_t seed = 5)
{
    ModelConfig c;
    c.architecture = arch;
    c.hidden = 64;
    c.ffn = 96;
    c.layers = 2;
    c.heads = 4;
    c.kvHeads = arch == "mistral" ? 4 : 2;
    c.headDim = arch == "qwen3" ? 32 : 16;
    c.vocab = vocab;
    c.maxPositions = 128;
    c.bosId = 1;
    c.eosIds = {2};
    c.qkvBias = arch == "qwen2";
    c.qkNorm = arch == "qwen3";
    c.tieEmbeddings = arch != "llama";
    c.slidingWindow = arch == "mistral" ? 32 : 0;
    const std::filesystem::path folder = dir / (name.empty() ? arch : name);
    writeSyntheticCheckpoint({"tiny", "tiny", c}, SyntheticOptions{0, DType::F32, seed, 0, {}}, folder);
    return loadModel(folder);
}

} // namespace mla::test
