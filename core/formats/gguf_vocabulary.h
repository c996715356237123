#pragma once

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mla {

// A tokenizer as a GGUF file embeds it (llama.cpp's tokenizer.* keys): a "llama" vocabulary (SentencePiece-style
// pieces with scores, from a llama2.c tokenizer.bin or a tokenizer.model) or a "gpt2" one (byte-level BPE with
// merges and a pre-tokenizer type, from a tokenizer.json).
struct GgufTokenizer {
    EmbeddedVocabulary vocab;  // model, tokens, scores, types, merges, bos/eos/unk, add_bos, pre
    std::optional<int> pad;
    std::optional<bool> addEos;
    std::optional<bool> addSpacePrefix; // "llama": the SentencePiece dummy prefix
    // Chat templates: name "" is tokenizer.chat_template, others tokenizer.chat_template.<name>.
    std::vector<std::pair<std::string, std::string>> chatTemplates;
    // A GGUF source's tokenizer.* metadata, copied as it is (then the fields above are informational only).
    std::vector<std::pair<std::string, GgufValue>> copied;
    std::string source; // what it was read from, for reports and the model card
    // Byte tokens <0xXX> appended after the model's vocabulary because the source had none for those bytes:
    // llama.cpp's SentencePiece tokenizer spells any character it cannot match in byte tokens and aborts when a
    // byte has none. The exporter gives them the unknown token's embedding and output rows.
    std::int64_t addedByteTokens = 0;
};

// The tokenizer of a tokenizer file (llama2.c tokenizer.bin, SentencePiece tokenizer.model, Hugging Face byte-level
// BPE tokenizer.json; a tokenizer_config.json beside it adds the chat template and special tokens), padded with
// unused "[PAD<id>]" tokens to `modelVocab`. The result is checked: a tokenizer read back from it encodes probe
// texts exactly as the source tokenizer does, or this throws an Error naming the file and the first difference
// (for a BPE vocabulary that check also picks llama.cpp's pre-tokenizer type).
GgufTokenizer ggufTokenizerFromFile(const std::filesystem::path& tokenizerFile, std::int64_t modelVocab);
// The tokenizer.* metadata of a GGUF file, copied.
GgufTokenizer ggufTokenizerFromGguf(const std::filesystem::path& ggufFile, std::int64_t modelVocab);

// tokenizer.* key/value pairs in writing order.
std::vector<std::pair<std::string, GgufValue>> ggufTokenizerMetadata(const GgufTokenizer& tokenizer);

// Texts on which an embedded tokenizer must agree with its source (mixed case, digits, contractions, punctuation,
// whitespace runs, non-ASCII letters).
const std::vector<std::string>& tokenizerProbeTexts();

} // namespace mla
