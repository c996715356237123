#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mla {

// Text <-> token ids. Pieces are raw bytes: a byte-level BPE piece may hold part of a UTF-8 character, so only the
// concatenation of consecutive pieces is guaranteed to be valid text.
class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    // "llama2c" (scored merges: llama2.c tokenizer.bin and GGUF "llama" vocabularies), "sentencepiece"
    // (tokenizer.model) or "bpe" (byte-level BPE from tokenizer.json or a GGUF "gpt2" vocabulary).
    virtual std::string kind() const = 0;
    virtual int vocabSize() const = 0;
    virtual std::optional<int> bosId() const = 0;
    virtual std::optional<int> eosId() const = 0;
    // The token text the vocabulary cannot represent becomes (<unk>), if it has one.
    virtual std::optional<int> unknownId() const { return std::nullopt; }

    // Ids for `text`; `addBos` prepends BOS when the tokenizer defines one.
    virtual std::vector<int> encode(std::string_view text, bool addBos) const = 0;

    // The bytes token `id` contributes when it follows token `previous` (-1 at the start). llama2.c drops the
    // leading space of the first piece after BOS; byte tokens such as <0x0A> become that byte.
    virtual std::string decodePiece(int previous, int id) const = 0;

    // The whole text of `ids` (the first id is treated as following `previous`).
    std::string decode(std::span<const int> ids, int previous = -1) const;

    // The vocabulary's own spelling of token `id` ("Ġthe", "▁the", "<0x0A>", "<|endoftext|>"), for showing
    // tokens rather than text. Special tokens decode to no text, so this is the only way to name them.
    virtual std::string piece(int id) const { return decodePiece(-1, id); }
    // BOS, EOS and other control tokens, which decodePiece() turns into no text (except in a llama2.c tokenizer.bin,
    // whose pieces run.c prints as they are).
    virtual bool isSpecial(int id) const
    {
        (void)id;
        return false;
    }
};

// Reads a tokenizer file, recognising the format by content (and name where content is ambiguous):
// tokenizer.json (byte-level BPE), tokenizer.model (SentencePiece), llama2.c tokenizer.bin. A malformed file gives an
// mla::Error naming the file and the problem.
std::unique_ptr<Tokenizer> loadTokenizer(const std::filesystem::path& path);

// The tokenizer file next to a checkpoint, if any: for a folder, inside it; for a file, in the same folder.
// Preference: tokenizer.json, tokenizer.model, tokenizer.bin, then any other *.bin that parses as a llama2.c
// tokenizer (e.g. tok512.bin). Never returns the checkpoint itself.
std::optional<std::filesystem::path> findTokenizerNextTo(const std::filesystem::path& checkpoint);

// Vocabulary embedded in a GGUF file (tokenizer.ggml.*), handed over by the GGUF reader.
struct EmbeddedVocabulary {
    std::string model; // tokenizer.ggml.model: "llama" or "gpt2"
    std::vector<std::string> tokens;
    std::vector<float> scores;        // may be empty
    std::vector<std::int32_t> types;  // may be empty; 1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte
    std::vector<std::string> merges;  // "gpt2" only
    std::optional<int> bos;
    std::optional<int> eos;
    std::optional<int> unk;
    std::optional<bool> addBos;
    std::string preTokenizer;         // tokenizer.ggml.pre, may be empty
};
std::unique_ptr<Tokenizer> tokenizerFromEmbedded(const EmbeddedVocabulary& vocab, const std::filesystem::path& file);

} // namespace mla
