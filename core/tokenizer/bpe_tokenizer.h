#pragma once

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mla {

// Ranked-merge BPE as in Hugging Face tokenizers: special tokens are cut out of the raw text first (longest match),
// the rest is normalized, pre-tokenized and each pre-token merged by rank.
//
// Two flavours share the merge loop: byte-level (GPT-2, Llama 3, Qwen2: every byte spelled as one printable
// character, decoded back by the ByteLevel decoder) and SentencePiece-style (Llama 2's tokenizer.json: characters
// with "▁" for space and <0xXX> byte fallback).
class BpeTokenizer : public Tokenizer {
public:
    // tokenizer.json. A tokenizer_config.json beside it, when readable, names the EOS (and BOS, when the
    // post_processor adds none but add_bos_token is set).
    static std::unique_ptr<BpeTokenizer> fromJsonFile(const std::filesystem::path& path);
    // `file` names the source in errors; with `useConfigBeside` its folder's tokenizer_config.json is read too.
    static std::unique_ptr<BpeTokenizer> fromJson(const nlohmann::json& json, const std::filesystem::path& file,
                                                  bool useConfigBeside = false);
    // GGUF "gpt2": the regex is chosen by tokenizer.ggml.pre ("llama-bpe" Llama 3, "qwen2" Qwen2, else GPT-2).
    static std::unique_ptr<BpeTokenizer> fromEmbedded(const EmbeddedVocabulary& vocab,
                                                      const std::filesystem::path& file);

    std::string kind() const override { return "bpe"; }
    int vocabSize() const override { return static_cast<int>(m_pieces.size()); }
    std::optional<int> bosId() const override { return m_bos; }
    std::optional<int> eosId() const override { return m_eos; }
    std::optional<int> unknownId() const override { return m_unk; }
    std::vector<int> encode(std::string_view text, bool addBos) const override;
    std::string decodePiece(int previous, int id) const override;
    std::string piece(int id) const override;
    bool isSpecial(int id) const override;

    bool byteLevel() const { return m_byteLevel; }
    // The pre-tokens of `text` as raw bytes, special tokens included as they are; shows how text is cut.
    std::vector<std::string> preTokenize(std::string_view text) const;
    std::optional<int> tokenId(const std::string& piece) const;

private:
    BpeTokenizer() = default;

    struct Added {
        std::string content;
        int id;
        bool special;
    };
    struct Segment {
        std::string_view text;
        int addedId; // -1 for ordinary text
        bool atTextStart;
    };

    // Building blocks for the two constructors.
    void setVocabulary(std::vector<std::pair<std::string, int>> vocab, const std::filesystem::path& file);
    void addMerge(const std::string& left, const std::string& right, const std::filesystem::path& file,
                  std::size_t index);
    void addAddedToken(std::string content, int id, bool special, const std::filesystem::path& file);
    void finish(const std::filesystem::path& file);
    int resolve(const std::string& piece, const std::filesystem::path& file, const std::string& what) const;

    std::vector<Segment> splitOnAdded(std::string_view text) const;
    void encodeWord(std::string_view word, std::vector<int>& out) const;
    void checkId(int id) const;

    std::vector<std::string> m_pieces; // by id; "" for an id no token uses
    std::unordered_map<std::string, int> m_vocab;
    struct Merge {
        int rank;
        int merged;
    };
    std::unordered_map<std::uint64_t, Merge> m_merges;
    std::vector<Added> m_added;
    std::array<std::vector<std::size_t>, 256> m_addedByFirstByte; // into m_added, longest first
    std::vector<std::uint8_t> m_flags;                           // per id: kAddedFlag, kSpecialFlag

    Normalizer m_normalizer;
    PreTokenizer m_preTokenizer;
    std::filesystem::path m_file; // named in errors
    bool m_byteLevel = true;
    bool m_byteFallback = false;
    bool m_ignoreMerges = false;
    bool m_fuseUnk = false;
    // SentencePiece-style vocabularies prepend "▁" to the text; like llama2.c, the space is not printed after BOS.
    bool m_stripSpaceAfterBos = false;
    std::optional<int> m_unk;
    std::array<int, 256> m_byteIds{}; // byte-level character, or <0xXX> fallback token, of each byte; -1 if none
    std::optional<int> m_bos;
    std::optional<int> m_eos;

    friend class BpeJsonReader;
};

} // namespace mla
