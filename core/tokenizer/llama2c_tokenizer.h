#pragma once

#include "tokenizer/tokenizer.h"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace mla {

// Scored-merge tokenizer of llama2.c (run.c encode()/decode(), reproduced token for token) over either a
// tokenizer.bin file or a GGUF "llama" vocabulary.
//
// tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, `length` bytes.
class Llama2cTokenizer : public Tokenizer {
public:
    // Reads every record up to the end of the file, or exactly `vocabSize` records when the checkpoint says how many
    // there are (trailing bytes are then ignored, as run.c does).
    static std::unique_ptr<Llama2cTokenizer> fromFile(const std::filesystem::path& path,
                                                      std::optional<int> vocabSize = std::nullopt);
    static std::unique_ptr<Llama2cTokenizer> fromBytes(std::span<const std::uint8_t> bytes,
                                                       const std::filesystem::path& file,
                                                       std::optional<int> vocabSize = std::nullopt);
    // GGUF pieces spell a space as U+2581; they are rewritten to ' ' so that the same merge rule applies.
    static std::unique_ptr<Llama2cTokenizer> fromEmbedded(const EmbeddedVocabulary& vocab,
                                                          const std::filesystem::path& file);

    std::string kind() const override { return "llama2c"; }
    int vocabSize() const override { return static_cast<int>(m_pieces.size()); }
    std::optional<int> bosId() const override { return m_bos; }
    std::optional<int> eosId() const override { return m_eos; }
    std::optional<int> unknownId() const override { return m_unk; }
    std::vector<int> encode(std::string_view text, bool addBos) const override;
    std::string decodePiece(int previous, int id) const override;
    std::string piece(int id) const override;
    bool isSpecial(int id) const override;

    float score(int id) const { return m_scores.at(static_cast<std::size_t>(id)); }
    int maxTokenLength() const { return m_maxTokenLength; }

private:
    Llama2cTokenizer() = default;
    void buildIndex();
    int lookup(const std::string& piece) const;
    void checkId(int id) const;

    std::vector<std::string> m_pieces;
    std::vector<float> m_scores;
    // GGUF control tokens (<s>, </s>) print nothing; a tokenizer.bin has no such notion and prints its pieces.
    std::vector<bool> m_control;
    // Pieces that text can turn into. A GGUF vocabulary excludes control, unknown, unused and byte tokens so that
    // text such as "<s>" can never become BOS; a tokenizer.bin keeps every piece, as run.c does.
    std::vector<bool> m_matchable;
    std::unordered_map<std::string, int> m_lookup;
    std::array<int, 256> m_byteIds{};
    int m_maxTokenLength = 0;
    int m_unk = 0;
    std::optional<int> m_bos;
    std::optional<int> m_eos;
    std::filesystem::path m_file; // named in errors
};

} // namespace mla
