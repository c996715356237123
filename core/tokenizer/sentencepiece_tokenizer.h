#pragma once

#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <memory>
#include <string>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace mla {

// tokenizer.model through libsentencepiece, so encodings are SentencePiece's own. Decoding follows llama2.c instead
// of SentencePiece's whole-text decoder (a space is dropped only after BOS, control tokens print nothing), so that a
// model prints the same text whether its vocabulary comes as tokenizer.model, tokenizer.bin or GGUF.
class SentencePieceTokenizer : public Tokenizer {
public:
    static std::unique_ptr<SentencePieceTokenizer> fromFile(const std::filesystem::path& path);
    // The serialized ModelProto; `file` only names it in errors.
    static std::unique_ptr<SentencePieceTokenizer> fromBytes(std::string_view serialized,
                                                             const std::filesystem::path& file);
    ~SentencePieceTokenizer() override;

    std::string kind() const override { return "sentencepiece"; }
    int vocabSize() const override;
    std::optional<int> bosId() const override;
    std::optional<int> eosId() const override;
    std::optional<int> unknownId() const override;
    std::vector<int> encode(std::string_view text, bool addBos) const override;
    std::string decodePiece(int previous, int id) const override;
    std::string piece(int id) const override;
    bool isSpecial(int id) const override;

private:
    SentencePieceTokenizer();
    void checkId(int id) const;

    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_processor;
    std::filesystem::path m_file;
    // Whether the model adds a dummy-prefix space, which is then not printed after BOS.
    bool m_stripSpaceAfterBos = true;
};

} // namespace mla
