#include "tokenizer/bpe_tokenizer.h"

#include "tokenizer/gguf_token_type.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

#include <algorithm>
#include <queue>

namespace mla {

namespace {

constexpr std::uint8_t kAddedFlag = 1;
constexpr std::uint8_t kSpecialFlag = 2;

// Ids index dense tables, so an id from an untrusted file is bounded before anything is sized by it. The largest
// real vocabularies are around 260k.
constexpr std::int64_t kMaxTokenId = (1 << 24) - 1;


std::uint64_t pairKey(int left, int right)
{
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

std::string inQuotes(const std::string& s)
{
    return "'" + s + "'";
}

} // namespace

void BpeTokenizer::setVocabulary(std::vector<std::pair<std::string, int>> vocab, const std::filesystem::path& file)
{
    int largest = -1;
    for (const auto& [piece, id] : vocab) {
        if (id < 0 || id > kMaxTokenId)
            throw Error(file, "token " + inQuotes(piece) + " has id " + std::to_string(id) + ", outside 0.."
                                  + std::to_string(kMaxTokenId));
        largest = std::max(largest, id);
    }
    m_pieces.assign(static_cast<std::size_t>(largest + 1), std::string());
    m_vocab.reserve(vocab.size() * 2);
    for (auto& [piece, id] : vocab) {
        auto& slot = m_pieces[static_cast<std::size_t>(id)];
        if (slot.empty())
            slot = piece;
        m_vocab.emplace(std::move(piece), id);
    }
}

int BpeTokenizer::resolve(const std::string& piece, const std::filesystem::path& file, const std::string& what) const
{
    auto it = m_vocab.find(piece);
    if (it == m_vocab.end())
        throw Error(file, what + " refers to unknown token " + inQuotes(piece));
    return it->second;
}

void BpeTokenizer::addMerge(const std::string& left, const std::string& right, const std::filesystem::path& file,
                            std::size_t index)
{
    const std::string what = "merge " + std::to_string(index) + " (" + inQuotes(left) + ", " + inQuotes(right) + ")";
    const int l = resolve(left, file, what);
    const int r = resolve(right, file, what);
    const int merged = resolve(left + right, file, what);
    // A repeated pair keeps its first, best rank, as in Hugging Face.
    m_merges.emplace(pairKey(l, r), Merge{static_cast<int>(index), merged});
}

void BpeTokenizer::addAddedToken(std::string content, int id, bool special, const std::filesystem::path& file)
{
    if (id < 0 || id > kMaxTokenId)
        throw Error(file, "added token " + inQuotes(content) + " has id " + std::to_string(id) + ", outside 0.."
                              + std::to_string(kMaxTokenId));
    if (content.empty())
        throw Error(file, "added token " + std::to_string(id) + " has empty content");
    if (static_cast<std::size_t>(id) >= m_pieces.size())
        m_pieces.resize(static_cast<std::size_t>(id) + 1);
    m_pieces[static_cast<std::size_t>(id)] = content;
    m_vocab.emplace(content, id);
    m_added.push_back({std::move(content), id, special});
}

void BpeTokenizer::finish(const std::filesystem::path& file)
{
    m_file = file;
    m_normalizer.setFile(file);
    m_preTokenizer.setFile(file);
    if (m_pieces.empty())
        throw Error(file, "the vocabulary is empty");
    m_flags.assign(m_pieces.size(), 0);
    for (const Added& a : m_added)
        m_flags[static_cast<std::size_t>(a.id)] |= kAddedFlag | (a.special ? kSpecialFlag : 0);
    for (std::size_t i = 0; i < m_added.size(); ++i)
        m_addedByFirstByte[static_cast<unsigned char>(m_added[i].content.front())].push_back(i);
    for (auto& list : m_addedByFirstByte)
        std::stable_sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
            return m_added[a].content.size() > m_added[b].content.size();
        });
    for (int b = 0; b < 256; ++b) {
        const std::string spelling = m_byteLevel ? byteToUnicode()[static_cast<std::size_t>(b)]
                                                 : utf8::bytePiece(static_cast<unsigned char>(b));
        auto it = m_vocab.find(spelling);
        m_byteIds[static_cast<std::size_t>(b)] = it == m_vocab.end() ? -1 : it->second;
    }
    auto checkOptionalId = [&](const std::optional<int>& id, const char* what) {
        if (id && (*id < 0 || static_cast<std::size_t>(*id) >= m_pieces.size()))
            throw Error(file, std::string(what) + " token id " + std::to_string(*id)
                                  + " is outside the vocabulary of " + std::to_string(m_pieces.size()));
    };
    checkOptionalId(m_bos, "the BOS");
    checkOptionalId(m_eos, "the EOS");
    checkOptionalId(m_unk, "the unknown");
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::fromEmbedded(const EmbeddedVocabulary& vocab,
                                                         const std::filesystem::path& file)
{
    const std::size_t n = vocab.tokens.size();
    if (n == 0)
        throw Error(file, "the embedded vocabulary has no tokens");
    if (static_cast<std::int64_t>(n) > kMaxTokenId)
        throw Error(file, "the embedded vocabulary has " + std::to_string(n) + " tokens, implausibly many");
    if (!vocab.types.empty() && vocab.types.size() != n)
        throw Error(file, "the embedded vocabulary has " + std::to_string(n) + " tokens but "
                              + std::to_string(vocab.types.size()) + " token types");

    std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
    std::vector<std::pair<std::string, int>> pairs;
    pairs.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        pairs.emplace_back(vocab.tokens[i], static_cast<int>(i));
    t->setVocabulary(std::move(pairs), file);
    for (std::size_t i = 0; i < vocab.types.size(); ++i)
        if (vocab.types[i] == gguf_token::control || vocab.types[i] == gguf_token::userDefined)
            if (!vocab.tokens[i].empty())
                t->addAddedToken(vocab.tokens[i], static_cast<int>(i), vocab.types[i] == gguf_token::control, file);

    for (std::size_t i = 0; i < vocab.merges.size(); ++i) {
        const std::string& m = vocab.merges[i];
        // As llama.cpp: the separator is the first space after the first character.
        const std::size_t space = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
        if (space == std::string::npos)
            throw Error(file, "merge " + std::to_string(i) + " " + inQuotes(m)
                                  + " is not two tokens separated by a space");
        t->addMerge(m.substr(0, space), m.substr(space + 1), file, i);
    }

    std::string_view pattern = kGpt2Pattern;
    if (vocab.preTokenizer == "llama-bpe") {
        pattern = kLlama3Pattern;
        t->m_ignoreMerges = true;
    } else if (vocab.preTokenizer == "qwen2") {
        pattern = kQwen2Pattern;
    } else if (vocab.preTokenizer == "smollm") {
        // SmolLM: every digit on its own (a Digits pre-tokenizer), then GPT-2's split, as llama.cpp's "smollm".
        t->m_preTokenizer.addSplit(std::make_shared<SplitRegex>(R"(\p{N})", false, file), SplitBehavior::Isolated);
    }
    t->m_preTokenizer.addSplit(std::make_shared<SplitRegex>(pattern, false, file), SplitBehavior::Isolated);
    t->m_byteLevel = true;

    // llama.cpp adds BOS to byte-level vocabularies only when told to, except for Llama 3.
    const bool addBos = vocab.addBos.value_or(vocab.preTokenizer == "llama-bpe");
    if (addBos)
        t->m_bos = vocab.bos;
    t->m_eos = vocab.eos;
    t->m_unk = vocab.unk;
    t->finish(file);
    return t;
}

std::optional<int> BpeTokenizer::tokenId(const std::string& piece) const
{
    auto it = m_vocab.find(piece);
    if (it == m_vocab.end())
        return std::nullopt;
    return it->second;
}

std::vector<BpeTokenizer::Segment> BpeTokenizer::splitOnAdded(std::string_view text) const
{
    std::vector<Segment> out;
    std::size_t start = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto& candidates = m_addedByFirstByte[static_cast<unsigned char>(text[pos])];
        const Added* hit = nullptr;
        for (std::size_t index : candidates) {
            if (text.substr(pos).starts_with(m_added[index].content)) {
                hit = &m_added[index];
                break;
            }
        }
        if (!hit) {
            ++pos;
            continue;
        }
        if (pos > start)
            out.push_back({text.substr(start, pos - start), -1, start == 0});
        out.push_back({text.substr(pos, hit->content.size()), hit->id, pos == 0});
        pos += hit->content.size();
        start = pos;
    }
    if (start < text.size())
        out.push_back({text.substr(start), -1, start == 0});
    return out;
}

std::vector<int> BpeTokenizer::encode(std::string_view text, bool addBos) const
{
    std::vector<int> ids;
    ids.reserve(text.size() / 2 + 2);
    if (addBos && m_bos)
        ids.push_back(*m_bos);
    for (const Segment& segment : splitOnAdded(text)) {
        if (segment.addedId >= 0) {
            ids.push_back(segment.addedId);
            continue;
        }
        const std::string normalized = m_normalizer.apply(segment.text);
        if (normalized.empty())
            continue;
        if (m_preTokenizer.empty()) {
            encodeWord(normalized, ids);
            continue;
        }
        for (const PreToken& p : m_preTokenizer.run(normalized, segment.atTextStart))
            encodeWord(p.text, ids);
    }
    return ids;
}

std::vector<std::string> BpeTokenizer::preTokenize(std::string_view text) const
{
    std::vector<std::string> out;
    for (const Segment& segment : splitOnAdded(text)) {
        if (segment.addedId >= 0) {
            out.emplace_back(segment.text);
            continue;
        }
        const std::string normalized = m_normalizer.apply(segment.text);
        if (normalized.empty())
            continue;
        if (m_preTokenizer.empty()) {
            out.push_back(normalized);
            continue;
        }
        for (PreToken& p : m_preTokenizer.run(normalized, segment.atTextStart))
            out.push_back(std::move(p.text));
    }
    return out;
}

void BpeTokenizer::encodeWord(std::string_view word, std::vector<int>& out) const
{
    if (word.empty())
        return;
    if (m_ignoreMerges) {
        // Llama 3: a pre-token that is itself in the vocabulary is taken whole, even when merges would split it.
        auto it = m_vocab.find(m_byteLevel ? byteLevelEncode(word) : std::string(word));
        if (it != m_vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }

    std::vector<int> ids;
    ids.reserve(word.size());
    bool lastWasUnknown = false;
    auto unknown = [&] {
        if (m_unk && !(m_fuseUnk && lastWasUnknown))
            ids.push_back(*m_unk);
        lastWasUnknown = true;
    };
    if (m_byteLevel) {
        for (const char c : word) {
            const int id = m_byteIds[static_cast<unsigned char>(c)];
            if (id >= 0) {
                ids.push_back(id);
                lastWasUnknown = false;
            } else {
                unknown();
            }
        }
    } else {
        for (std::size_t pos = 0; pos < word.size();) {
            const std::size_t length = utf8::charLength(word, pos);
            const std::string character(word.substr(pos, length));
            pos += length;
            if (auto it = m_vocab.find(character); it != m_vocab.end()) {
                ids.push_back(it->second);
                lastWasUnknown = false;
                continue;
            }
            const bool allBytes = std::all_of(character.begin(), character.end(),
                                              [&](char b) { return m_byteIds[static_cast<unsigned char>(b)] >= 0; });
            if (m_byteFallback && allBytes) {
                for (const char b : character)
                    ids.push_back(m_byteIds[static_cast<unsigned char>(b)]);
                lastWasUnknown = false;
                continue;
            }
            unknown();
        }
    }

    // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is left, via a heap of candidate pairs
    // whose stale entries are skipped; this is Hugging Face's Word::merge_all without dropout.
    const std::size_t n = ids.size();
    if (n >= 2 && !m_merges.empty()) {
        std::vector<std::size_t> next(n), prev(n);
        std::vector<bool> alive(n, true);
        for (std::size_t i = 0; i < n; ++i) {
            next[i] = i + 1;
            prev[i] = i == 0 ? n : i - 1;
        }
        struct Candidate {
            int rank;
            std::size_t left;
            std::size_t right;
            int leftId;
            int rightId;
            int merged;
        };
        auto worse = [](const Candidate& a, const Candidate& b) {
            if (a.rank != b.rank)
                return a.rank > b.rank;
            return a.left > b.left;
        };
        std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
        auto consider = [&](std::size_t left, std::size_t right) {
            auto it = m_merges.find(pairKey(ids[left], ids[right]));
            if (it != m_merges.end())
                heap.push({it->second.rank, left, right, ids[left], ids[right], it->second.merged});
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
        for (std::size_t i = 0; i < n; i = next[i])
            out.push_back(ids[i]);
        return;
    }
    out.insert(out.end(), ids.begin(), ids.end());
}

void BpeTokenizer::checkId(int id) const
{
    if (id < 0 || static_cast<std::size_t>(id) >= m_pieces.size())
        throw Error(m_file, "token id " + std::to_string(id) + " is outside the tokenizer's vocabulary of "
                                + std::to_string(m_pieces.size())
                                + " (a model with a padded vocabulary generated an id that has no text)");
}

std::string BpeTokenizer::decodePiece(int previous, int id) const
{
    checkId(id);
    const auto index = static_cast<std::size_t>(id);
    const std::uint8_t flags = m_flags[index];
    if (flags & kSpecialFlag)
        return {};
    const std::string& p = m_pieces[index];
    // Added tokens were matched in the raw text, so their content is the text itself.
    if (flags & kAddedFlag)
        return p;
    if (m_byteLevel) {
        // As Hugging Face's ByteLevel decoder: a piece with a character outside the byte alphabet stays as it is.
        auto bytes = byteLevelDecode(p);
        return bytes ? *bytes : p;
    }
    if (auto byte = utf8::parseBytePiece(p))
        return std::string(1, static_cast<char>(*byte));
    std::string text = utf8::replaceAll(p, utf8::kSpaceMarker, " ");
    // The prefix space SentencePiece-style tokenizers add is dropped after BOS, as llama2.c does.
    if (m_stripSpaceAfterBos && m_bos && previous == *m_bos && !text.empty() && text.front() == ' ')
        text.erase(0, 1);
    return text;
}

std::string BpeTokenizer::piece(int id) const
{
    checkId(id);
    return m_pieces[static_cast<std::size_t>(id)];
}

bool BpeTokenizer::isSpecial(int id) const
{
    checkId(id);
    return (m_flags[static_cast<std::size_t>(id)] & kSpecialFlag) != 0;
}

} // namespace mla
