#include "tokenizer/llama2c_tokenizer.h"

#include "tokenizer/gguf_token_type.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/mapped_file.h"

#include <algorithm>
#include <cstring>
#include <queue>

namespace mla {

namespace {


// run.c starts its search for the best merge at this score and only accepts strictly greater ones, so a pair whose
// score is at or below it is never merged.
constexpr float kNoMergeScore = -1e10f;

std::int32_t readInt32(const std::uint8_t* p)
{
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

} // namespace

std::unique_ptr<Llama2cTokenizer> Llama2cTokenizer::fromFile(const std::filesystem::path& path,
                                                             std::optional<int> vocabSize)
{
    auto mapped = MappedFile::open(path);
    return fromBytes(mapped->bytes(), path, vocabSize);
}

std::unique_ptr<Llama2cTokenizer> Llama2cTokenizer::fromBytes(std::span<const std::uint8_t> bytes,
                                                              const std::filesystem::path& file,
                                                              std::optional<int> vocabSize)
{
    if (bytes.empty())
        throw Error(file, "empty file, not a llama2.c tokenizer");
    if (vocabSize && *vocabSize <= 0)
        throw Error(file, "vocabulary size " + std::to_string(*vocabSize) + " is not positive");
    if (bytes.size() < 4)
        throw Error(file, "truncated: " + std::to_string(bytes.size())
                              + " bytes, a llama2.c tokenizer starts with a 4-byte max_token_length");

    std::unique_ptr<Llama2cTokenizer> t(new Llama2cTokenizer());
    t->m_file = file;
    const std::uint8_t* data = bytes.data();
    const std::size_t size = bytes.size();
    t->m_maxTokenLength = readInt32(data);
    if (t->m_maxTokenLength <= 0)
        throw Error(file, "max_token_length " + std::to_string(t->m_maxTokenLength)
                              + " is not positive; not a llama2.c tokenizer");

    // Every length is checked against the bytes that remain before anything is allocated from it; each record takes
    // at least 8 bytes, so the token count is bounded by the file size too.
    std::size_t offset = 4;
    while (vocabSize ? t->m_pieces.size() < static_cast<std::size_t>(*vocabSize) : offset < size) {
        const std::size_t index = t->m_pieces.size();
        const std::string which = "token " + std::to_string(index);
        if (size - offset < 8)
            throw Error(file, "truncated: " + which + " needs an 8-byte score and length at offset "
                                  + std::to_string(offset) + ", only " + std::to_string(size - offset) + " left");
        float score;
        std::memcpy(&score, data + offset, sizeof score);
        const std::int32_t length = readInt32(data + offset + 4);
        offset += 8;
        if (length < 0)
            throw Error(file, which + " has a negative length " + std::to_string(length) + " at offset "
                                  + std::to_string(offset - 4));
        if (static_cast<std::size_t>(length) > size - offset)
            throw Error(file, "truncated: " + which + " claims " + std::to_string(length) + " bytes at offset "
                                  + std::to_string(offset) + ", only " + std::to_string(size - offset) + " left");
        if (length > t->m_maxTokenLength)
            throw Error(file, which + " is " + std::to_string(length) + " bytes long, more than max_token_length "
                                  + std::to_string(t->m_maxTokenLength));
        t->m_pieces.emplace_back(reinterpret_cast<const char*>(data + offset), static_cast<std::size_t>(length));
        t->m_scores.push_back(score);
        offset += static_cast<std::size_t>(length);
    }
    if (t->m_pieces.size() < 3)
        throw Error(file, "only " + std::to_string(t->m_pieces.size())
                              + " tokens; a llama2.c tokenizer has at least <unk>, <s> and </s>");

    // run.c hard-codes these ids.
    t->m_unk = 0;
    t->m_bos = 1;
    t->m_eos = 2;
    t->m_control.assign(t->m_pieces.size(), false);
    t->m_matchable.assign(t->m_pieces.size(), true);
    t->buildIndex();
    return t;
}

std::unique_ptr<Llama2cTokenizer> Llama2cTokenizer::fromEmbedded(const EmbeddedVocabulary& vocab,
                                                                 const std::filesystem::path& file)
{
    const std::size_t n = vocab.tokens.size();
    if (n == 0)
        throw Error(file, "the embedded vocabulary has no tokens");
    if (!vocab.scores.empty() && vocab.scores.size() != n)
        throw Error(file, "the embedded vocabulary has " + std::to_string(n) + " tokens but "
                              + std::to_string(vocab.scores.size()) + " scores");
    if (!vocab.types.empty() && vocab.types.size() != n)
        throw Error(file, "the embedded vocabulary has " + std::to_string(n) + " tokens but "
                              + std::to_string(vocab.types.size()) + " token types");
    auto checkOptionalId = [&](const std::optional<int>& id, const char* what) {
        if (id && (*id < 0 || static_cast<std::size_t>(*id) >= n))
            throw Error(file, std::string("the embedded ") + what + " token id " + std::to_string(*id)
                                  + " is outside the vocabulary of " + std::to_string(n));
    };
    checkOptionalId(vocab.bos, "BOS");
    checkOptionalId(vocab.eos, "EOS");
    checkOptionalId(vocab.unk, "unknown");

    std::unique_ptr<Llama2cTokenizer> t(new Llama2cTokenizer());
    t->m_file = file;
    t->m_pieces.reserve(n);
    t->m_control.assign(n, false);
    t->m_matchable.assign(n, true);
    std::size_t longest = 1;
    for (std::size_t i = 0; i < n; ++i) {
        t->m_pieces.push_back(utf8::replaceAll(vocab.tokens[i], utf8::kSpaceMarker, " "));
        longest = std::max(longest, t->m_pieces.back().size());
        const std::int32_t type = vocab.types.empty() ? 1 : vocab.types[i];
        if (type == gguf_token::control)
            t->m_control[i] = true;
        if (type == gguf_token::control || type == gguf_token::unknown || type == gguf_token::unused || type == gguf_token::byte)
            t->m_matchable[i] = false;
    }
    // Without scores, earlier tokens (the more frequent merges in every SentencePiece export) win.
    if (vocab.scores.empty()) {
        t->m_scores.resize(n);
        for (std::size_t i = 0; i < n; ++i)
            t->m_scores[i] = -static_cast<float>(i);
    } else {
        t->m_scores = vocab.scores;
    }
    t->m_maxTokenLength = static_cast<int>(std::min<std::size_t>(longest, 1u << 30));
    t->m_unk = vocab.unk.value_or(0);
    // A llama vocabulary without explicit ids follows llama2.c's layout.
    t->m_bos = vocab.bos ? vocab.bos : (n > 1 ? std::optional<int>(1) : std::nullopt);
    t->m_eos = vocab.eos ? vocab.eos : (n > 2 ? std::optional<int>(2) : std::nullopt);
    if (vocab.addBos && !*vocab.addBos)
        t->m_bos.reset();
    // Byte tokens are found by their spelling, so a vocabulary without token types still falls back to bytes.
    t->buildIndex();
    return t;
}

void Llama2cTokenizer::buildIndex()
{
    m_lookup.reserve(m_pieces.size() * 2);
    m_byteIds.fill(-1);
    for (std::size_t i = 0; i < m_pieces.size(); ++i) {
        // With duplicate pieces run.c's bsearch may return any of them; the lowest id is the deterministic choice.
        if (m_matchable[i])
            m_lookup.emplace(m_pieces[i], static_cast<int>(i));
        if (auto byte = utf8::parseBytePiece(m_pieces[i]); byte && m_byteIds[*byte] < 0)
            m_byteIds[*byte] = static_cast<int>(i);
    }
}

int Llama2cTokenizer::lookup(const std::string& piece) const
{
    auto it = m_lookup.find(piece);
    return it == m_lookup.end() ? -1 : it->second;
}

std::vector<int> Llama2cTokenizer::encode(std::string_view text, bool addBos) const
{
    std::vector<int> tokens;
    tokens.reserve(text.size() + 2);
    if (addBos && m_bos)
        tokens.push_back(*m_bos);
    // run.c's add_dummy_prefix: a non-empty text starts with the token for " ".
    if (!text.empty()) {
        if (const int space = lookup(" "); space >= 0)
            tokens.push_back(space);
    }

    // One piece per UTF-8 character, grouped exactly as run.c does: a lead byte starts a new group, up to four bytes
    // per group, and a group not in the vocabulary falls back to its byte tokens.
    std::string group;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if ((c & 0xC0) != 0x80)
            group.clear();
        group += static_cast<char>(c);
        const bool nextContinues = i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
        if (nextContinues && group.size() < 4)
            continue;
        if (const int id = lookup(group); id >= 0) {
            tokens.push_back(id);
        } else {
            // run.c emits byte + 3, which is the same token whenever the vocabulary has the usual byte-token layout;
            // a vocabulary without byte tokens (a character-level one) gets one <unk> per character instead of
            // unrelated tokens.
            const bool bytesKnown = std::all_of(group.begin(), group.end(),
                                                [&](char b) { return m_byteIds[static_cast<unsigned char>(b)] >= 0; });
            if (bytesKnown) {
                for (const char b : group)
                    tokens.push_back(m_byteIds[static_cast<unsigned char>(b)]);
            } else {
                tokens.push_back(m_unk);
            }
        }
        group.clear();
    }

    // run.c rescans every pair after each merge and merges the best-scoring one (the leftmost on ties). A heap
    // ordered by (score, position) picks the same pair each round in O(n log n), which matters for long texts.
    const std::size_t n = tokens.size();
    if (n < 2)
        return tokens;
    std::vector<int> ids = tokens;
    std::vector<std::size_t> next(n), prev(n);
    std::vector<bool> alive(n, true);
    for (std::size_t i = 0; i < n; ++i) {
        next[i] = i + 1;
        prev[i] = i == 0 ? n : i - 1;
    }
    struct Candidate {
        float score;
        std::size_t left;
        std::size_t right;
        int leftId;
        int rightId;
        int merged;
    };
    auto worse = [](const Candidate& a, const Candidate& b) {
        if (a.score != b.score)
            return a.score < b.score;
        return a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
    std::string joined;
    auto consider = [&](std::size_t left, std::size_t right) {
        const std::string& a = m_pieces[static_cast<std::size_t>(ids[left])];
        const std::string& b = m_pieces[static_cast<std::size_t>(ids[right])];
        if (a.size() + b.size() > static_cast<std::size_t>(m_maxTokenLength))
            return;
        joined.assign(a);
        joined.append(b);
        const int merged = lookup(joined);
        if (merged < 0)
            return;
        const float score = m_scores[static_cast<std::size_t>(merged)];
        if (!(score > kNoMergeScore))
            return;
        heap.push({score, left, right, ids[left], ids[right], merged});
    };
    for (std::size_t i = 0; i + 1 < n; ++i)
        consider(i, i + 1);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right || ids[c.left] != c.leftId
            || ids[c.right] != c.rightId)
            continue;
        ids[c.left] = c.merged;
        alive[c.right] = false;
        next[c.left] = next[c.right];
        if (next[c.left] < n)
            prev[next[c.left]] = c.left;
        if (prev[c.left] < n)
            consider(prev[c.left], c.left);
        if (next[c.left] < n)
            consider(c.left, next[c.left]);
    }
    tokens.clear();
    for (std::size_t i = 0; i < n; i = next[i])
        tokens.push_back(ids[i]);
    return tokens;
}

void Llama2cTokenizer::checkId(int id) const
{
    if (id < 0 || static_cast<std::size_t>(id) >= m_pieces.size())
        throw Error(m_file, "token id " + std::to_string(id) + " is outside the tokenizer's vocabulary of "
                                + std::to_string(m_pieces.size())
                                + " (a model with a padded vocabulary generated an id that has no text)");
}

std::string Llama2cTokenizer::decodePiece(int previous, int id) const
{
    checkId(id);
    const auto index = static_cast<std::size_t>(id);
    if (m_control[index])
        return {};
    std::string_view p = m_pieces[index];
    // As run.c: after BOS the SentencePiece decoder drops the dummy-prefix space.
    if (m_bos && previous == *m_bos && !p.empty() && p.front() == ' ')
        p.remove_prefix(1);
    if (auto byte = utf8::parseBytePiece(p))
        return std::string(1, static_cast<char>(*byte));
    return std::string(p);
}

std::string Llama2cTokenizer::piece(int id) const
{
    checkId(id);
    return m_pieces[static_cast<std::size_t>(id)];
}

bool Llama2cTokenizer::isSpecial(int id) const
{
    checkId(id);
    const auto index = static_cast<std::size_t>(id);
    return m_control[index] || id == m_bos || id == m_eos;
}

} // namespace mla
