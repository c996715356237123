#include "tokenizer/sentencepiece_tokenizer.h"

#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/input_file.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

namespace mla {

SentencePieceTokenizer::SentencePieceTokenizer()
    : m_processor(std::make_unique<sentencepiece::SentencePieceProcessor>())
{
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::fromFile(const std::filesystem::path& path)
{
    return fromBytes(readInputFile(path, kMaxTokenizerFileBytes, "tokenizer"), path);
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::fromBytes(std::string_view serialized,
                                                                          const std::filesystem::path& file)
{
    if (serialized.empty())
        throw Error(file, "empty file, not a SentencePiece model");
    std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
    t->m_file = file;
    sentencepiece::util::Status status;
    try {
        status = t->m_processor->LoadFromSerializedProto(serialized);
    } catch (const std::exception& e) {
        // libsentencepiece's trie builder throws instead of returning a status on some malformed vocabularies (found
        // by fuzzing: tests/fuzz/regressions/tokenizer_sentencepiece).
        throw Error(file, std::string("not a valid SentencePiece model: ") + e.what());
    }
    if (!status.ok())
        throw Error(file, "not a valid SentencePiece model: " + status.ToString());
    if (t->m_processor->GetPieceSize() <= 0)
        throw Error(file, "the SentencePiece model has no pieces");
    // The model's normalizer spec is not reachable through the installed headers, so ask the model itself.
    std::vector<std::string> pieces;
    if (t->m_processor->Encode("a", &pieces).ok())
        t->m_stripSpaceAfterBos = !pieces.empty() && pieces.front().starts_with(utf8::kSpaceMarker);
    return t;
}

int SentencePieceTokenizer::vocabSize() const
{
    return m_processor->GetPieceSize();
}

std::optional<int> SentencePieceTokenizer::bosId() const
{
    const int id = m_processor->bos_id();
    return id >= 0 ? std::optional<int>(id) : std::nullopt;
}

std::optional<int> SentencePieceTokenizer::eosId() const
{
    const int id = m_processor->eos_id();
    return id >= 0 ? std::optional<int>(id) : std::nullopt;
}

std::optional<int> SentencePieceTokenizer::unknownId() const
{
    const int id = m_processor->unk_id();
    return id >= 0 ? std::optional<int>(id) : std::nullopt;
}

std::vector<int> SentencePieceTokenizer::encode(std::string_view text, bool addBos) const
{
    std::vector<int> ids;
    if (addBos && bosId())
        ids.push_back(*bosId());
    std::vector<int> body;
    const auto status = m_processor->Encode(text, &body);
    if (!status.ok())
        throw Error(m_file, "SentencePiece could not encode the text: " + status.ToString());
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

void SentencePieceTokenizer::checkId(int id) const
{
    if (id < 0 || id >= vocabSize())
        throw Error(m_file, "token id " + std::to_string(id) + " is outside the tokenizer's vocabulary of "
                                + std::to_string(vocabSize()) + " (a model with a padded vocabulary generated an id that has no text)");
}

std::string SentencePieceTokenizer::decodePiece(int previous, int id) const
{
    checkId(id);
    if (m_processor->IsControl(id))
        return {};
    const std::string& raw = m_processor->IdToPiece(id);
    if (m_processor->IsByte(id)) {
        if (auto byte = utf8::parseBytePiece(raw))
            return std::string(1, static_cast<char>(*byte));
    }
    std::string text = utf8::replaceAll(raw, utf8::kSpaceMarker, " ");
    const auto bos = bosId();
    if (m_stripSpaceAfterBos && bos && previous == *bos && !text.empty() && text.front() == ' ')
        text.erase(0, 1);
    return text;
}

std::string SentencePieceTokenizer::piece(int id) const
{
    checkId(id);
    return m_processor->IdToPiece(id);
}

bool SentencePieceTokenizer::isSpecial(int id) const
{
    checkId(id);
    return m_processor->IsControl(id);
}

} // namespace mla
