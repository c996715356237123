#include "common/test_support.h"

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <random>

using namespace mla;
using nlohmann::json;

namespace {

// GPT-2's vocabulary starts with the 256 byte characters in bytes_to_unicode() order: the printable bytes 33..126,
// 161..172, 174..255, then the other 68. The fixtures use the same order, so single-byte ids equal GPT-2's
// ("!" = 0, "A" = 32, "a" = 64, "Ċ" (newline) = 198, "Ġ" (space) = 220).
std::vector<int> gpt2ByteOrder()
{
    std::vector<int> order;
    for (int b = 0; b < 256; ++b)
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            order.push_back(b);
    for (int b = 0; b < 256; ++b)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)))
            order.push_back(b);
    return order;
}

// Id of a printable ASCII character in these fixtures (and in GPT-2).
int ascii(char c) { return c - 33; }
constexpr int kSpace = 220;   // "Ġ"
constexpr int kNewline = 198; // "Ċ"

// The merges of the fixtures, in rank order; merge k creates token 256 + k. "Ġ" is the byte-level space.
const std::vector<std::pair<std::string, std::string>>& fixtureMerges()
{
    static const std::vector<std::pair<std::string, std::string>> merges = {
        {"Ġ", "t"},    // 0 -> 256 "Ġt"
        {"h", "e"},    // 1 -> 257 "he"
        {"Ġt", "he"},  // 2 -> 258 "Ġthe"
        {"l", "l"},    // 3 -> 259 "ll"
        {"ll", "o"},   // 4 -> 260 "llo"
        {"H", "e"},    // 5 -> 261 "He"
        {"He", "llo"}, // 6 -> 262 "Hello"
        {"Ġ", "w"},    // 7 -> 263 "Ġw"
        {"o", "r"},    // 8 -> 264 "or"
        {"Ġw", "or"},  // 9 -> 265 "Ġwor"
        {"Ġwor", "l"}, // 10 -> 266 "Ġworl"
        {"Ġworl", "d"},// 11 -> 267 "Ġworld"
        {"'", "s"},    // 12 -> 268 "'s"
        {"Ġ", "1"},    // 13 -> 269 "Ġ1"
        {"2", "3"},    // 14 -> 270 "23"
        {"Ġ1", "23"},  // 15 -> 271 "Ġ123"
    };
    return merges;
}
constexpr int kEndOfText = 272;  // "<|endoftext|>", special
constexpr int kXyz = 273;        // "xyz": in the vocabulary, but no merge builds it
constexpr int kEndPrefix = 274;   // "<|end", a non-special added token and a prefix of "<|endoftext|>"
constexpr int kBeginOfText = 275; // "<|begin_of_text|>", special (Llama 3 fixture only)

json byteLevelVocab()
{
    json vocab = json::object();
    const auto order = gpt2ByteOrder();
    for (std::size_t i = 0; i < order.size(); ++i)
        vocab[byteToUnicode()[static_cast<std::size_t>(order[i])]] = i;
    int next = 256;
    for (const auto& [a, b] : fixtureMerges())
        vocab[a + b] = next++;
    vocab["<|endoftext|>"] = kEndOfText;
    vocab["xyz"] = kXyz;
    return vocab;
}

json addedToken(int id, const std::string& content, bool special)
{
    return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
            {"rstrip", false},  {"normalized", false}, {"special", special}};
}

// GPT-2 style: ByteLevel pre-tokenizer with its built-in regex, merges in the "a b" string form.
json gpt2Json()
{
    json merges = json::array();
    for (const auto& [a, b] : fixtureMerges())
        merges.push_back(a + " " + b);
    json byteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    return {{"version", "1.0"},
            {"added_tokens", {addedToken(kEndOfText, "<|endoftext|>", true), addedToken(kEndPrefix, "<|end", false)}},
            {"normalizer", nullptr},
            {"pre_tokenizer", byteLevel},
            {"post_processor", byteLevel},
            {"decoder", byteLevel},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
              {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", byteLevelVocab()},
              {"merges", merges}}}};
}

// Llama 3 style: Split on the Llama 3 regex + ByteLevel without regex, ignore_merges, BOS added by
// TemplateProcessing, merges in the newer [a, b] array form.
json llama3Json()
{
    json j = gpt2Json();
    json merges = json::array();
    for (const auto& [a, b] : fixtureMerges())
        merges.push_back({a, b});
    j["model"]["merges"] = merges;
    j["model"]["ignore_merges"] = true;
    j["model"]["vocab"]["<|begin_of_text|>"] = kBeginOfText;
    j["added_tokens"].push_back(addedToken(kBeginOfText, "<|begin_of_text|>", true));
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", std::string(kLlama3Pattern)}}}, {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
    j["post_processor"] = {
        {"type", "Sequence"},
        {"processors",
         {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
          {{"type", "TemplateProcessing"},
           {"single",
            {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
           {"pair", json::array()},
           {"special_tokens",
            {{"<|begin_of_text|>",
              {{"id", "<|begin_of_text|>"}, {"ids", {kBeginOfText}}, {"tokens", {"<|begin_of_text|>"}}}}}}}}}};
    return j;
}

// Llama 2's tokenizer.json: characters with "▁" for space, <0xXX> byte fallback, a Prepend/Replace normalizer.
// Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, 259 "▁", then h e l o w r d at 260..266, merges from 267.
json llama2Json()
{
    json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        vocab[name] = 3 + b;
    }
    int next = 259;
    for (const char* c : {"▁", "h", "e", "l", "o", "w", "r", "d"})
        vocab[c] = next++;
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"l", "l"},         // 0 -> 267 "ll"
        {"▁", "h"},         // 1 -> 268 "▁h"
        {"▁h", "e"},        // 2 -> 269 "▁he"
        {"▁he", "ll"},      // 3 -> 270 "▁hell"
        {"▁hell", "o"},     // 4 -> 271 "▁hello"
        {"▁", "w"},         // 5 -> 272 "▁w"
        {"o", "r"},         // 6 -> 273 "or"
        {"▁w", "or"},       // 7 -> 274 "▁wor"
        {"▁wor", "l"},      // 8 -> 275 "▁worl"
        {"▁worl", "d"},     // 9 -> 276 "▁world"
    };
    json mergeList = json::array();
    for (const auto& [a, b] : merges) {
        vocab[a + b] = next++;
        mergeList.push_back(a + " " + b);
    }
    return {{"version", "1.0"},
            {"added_tokens", {addedToken(0, "<unk>", true), addedToken(1, "<s>", true), addedToken(2, "</s>", true)}},
            {"normalizer",
             {{"type", "Sequence"},
              {"normalizers",
               {{{"type", "Prepend"}, {"prepend", "▁"}},
                {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
            {"pre_tokenizer", nullptr},
            {"post_processor",
             {{"type", "TemplateProcessing"},
              {"single",
               {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
            {"decoder",
             {{"type", "Sequence"},
              {"decoders",
               {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}},
                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
            {"model",
             {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab},
              {"merges", mergeList}}}};
}

EmbeddedVocabulary embeddedFrom(const json& j, const std::string& pre)
{
    EmbeddedVocabulary v;
    v.model = "gpt2";
    std::map<int, std::string> byId;
    for (const auto& [piece, id] : j["model"]["vocab"].items())
        byId[id.get<int>()] = piece;
    for (const auto& a : j["added_tokens"])
        byId[a["id"].get<int>()] = a["content"].get<std::string>();
    for (const auto& [id, piece] : byId) {
        if (id != static_cast<int>(v.tokens.size()))
            throw std::logic_error("fixture ids are not dense");
        v.tokens.push_back(piece);
        v.types.push_back(id == kEndPrefix ? 4 : (id == kEndOfText || id == kBeginOfText) ? 3 : 1);
    }
    for (const auto& [a, b] : fixtureMerges())
        v.merges.push_back(a + " " + b);
    v.preTokenizer = pre;
    v.eos = kEndOfText;
    if (pre == "llama-bpe")
        v.bos = kBeginOfText;
    return v;
}

std::vector<std::string> roundTripTexts()
{
    std::vector<std::string> texts = {
        "Hello world's 123  ok",
        "The quick brown fox jumps over the lazy dog.",
        "",
        " ",
        "   \n\n\t  mixed   whitespace \r\n\r\n  ",
        "你好，世界！这是中文。",
        "emoji 😀🎉 and a family 👨‍👩‍👧 and flags 🇫🇷",
        "Ünïcödé: café, naïve, Ελληνικά, русский, العربية, हिन्दी",
        "numbers 1234567890 3.14159 -42 1e10",
        "code: if (x != y) { return a->b[0]; } // comment",
        "I'M SHOUTING, you're whispering, they'd've",
        std::string("invalid \xff\xfe UTF-8 \xc3 cut \xe4\xbd"),
        std::string("nul\0byte", 8),
    };
    std::mt19937 rng(42);
    const std::vector<std::string> alphabet = {"a", "Z", " ", "  ", "\n", "\t", "'s", "1", "23", "中", "😀", "é", ".",
                                               "Hello", "world", "<|end", "\x80", "\xff"};
    for (int i = 0; i < 150; ++i) {
        std::string s;
        for (int k = static_cast<int>(rng() % 25); k > 0; --k)
            s += alphabet[rng() % alphabet.size()];
        texts.push_back(s);
    }
    return texts;
}

std::vector<int> ids(std::initializer_list<int> list) { return list; }

} // namespace

class TestBpeTokenizer : public QObject {
    Q_OBJECT

private slots:
    void byteAlphabetIsGpt2s()
    {
        QCOMPARE(byteToUnicode()[' '], std::string("Ġ"));
        QCOMPARE(byteToUnicode()['\n'], std::string("Ċ"));
        QCOMPARE(byteToUnicode()[0], std::string("Ā"));
        QCOMPARE(byteToUnicode()['A'], std::string("A"));
        QCOMPARE(byteToUnicode()[173], std::string("Ń"));
        QCOMPARE(byteToUnicode()[255], std::string("ÿ"));
        std::string all;
        for (int b = 0; b < 256; ++b)
            all += static_cast<char>(b);
        QCOMPARE(byteLevelDecode(byteLevelEncode(all)), std::optional<std::string>(all));
        QCOMPARE(byteLevelDecode("中"), std::optional<std::string>());

        auto t = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        QCOMPARE(t->tokenId("Ġ"), std::optional<int>(kSpace)); // as in GPT-2's own vocabulary
        QCOMPARE(t->tokenId("Ċ"), std::optional<int>(kNewline));
        QCOMPARE(t->tokenId("!"), std::optional<int>(0));
    }

    void gpt2RegexSplitsAsGpt2()
    {
        auto t = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        QCOMPARE(t->preTokenize("Hello world's 123  ok"),
                 (std::vector<std::string>{"Hello", " world", "'s", " 123", " ", " ok"}));
        // GPT-2's contractions are lower-case only; "\s+(?!\S)" leaves the last space to the next word.
        QCOMPARE(t->preTokenize("I'M here\n\nHi   there!!"),
                 (std::vector<std::string>{"I", "'", "M", " here", "\n", "\n", "Hi", "  ", " there", "!!"}));
        QCOMPARE(t->preTokenize("a<|endoftext|>b"), (std::vector<std::string>{"a", "<|endoftext|>", "b"}));
    }

    void gpt2EncodesByRank()
    {
        auto t = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        QCOMPARE(t->kind(), std::string("bpe"));
        QVERIFY(t->byteLevel());
        QCOMPARE(t->vocabSize(), 275);
        QCOMPARE(t->bosId(), std::optional<int>());
        QCOMPARE(t->eosId(), std::optional<int>(kEndOfText)); // found by name, no tokenizer_config.json here

        // "Hello": H e l l o. Lowest rank first: "l l" (3) -> H e ll o; "ll o" (4) -> H e llo; "H e" (5) -> He llo;
        // "He llo" (6) -> Hello = 262.
        // " world": Ġ w o r l d. "Ġ w" (7), "o r" (8), "Ġw or" (9), "Ġwor l" (10), "Ġworl d" (11) -> 267.
        // "'s": "' s" (12) -> 268. " 123": "Ġ 1" (13) before "2 3" (14), then "Ġ1 23" (15) -> 271.
        // " ": Ġ = 220 alone (the next space belongs to " ok"). " ok": no merges -> Ġ o k = 220, 78, 74.
        QCOMPARE(t->encode("Hello world's 123  ok", false), ids({262, 267, 268, 271, kSpace, kSpace, 78, 74}));
        // " the": "Ġ t" (0) -> Ġt h e; "h e" (1) -> Ġt he; "Ġt he" (2) -> Ġthe = 258. Without the space only
        // "h e" applies: t he = 83, 257.
        QCOMPARE(t->encode(" the", false), ids({258}));
        QCOMPARE(t->encode("the", false), ids({ascii('t'), 257}));
        // "lll": both "l l" pairs have rank 3; the leftmost merges first: ll l.
        QCOMPARE(t->encode("lll", false), ids({259, ascii('l')}));
        // "xyz" is in the vocabulary but no merge reaches it.
        QCOMPARE(t->encode("xyz", false), ids({ascii('x'), ascii('y'), ascii('z')}));
        // Newline is Ċ = 198; "\n\n" splits into two pre-tokens (see the regex test).
        QCOMPARE(t->encode("\n\nHello", false), ids({kNewline, kNewline, 262}));
        // No BOS is defined, so addBos changes nothing.
        QCOMPARE(t->encode("Hello", true), ids({262}));
    }

    void specialTokens()
    {
        auto t = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        // Special tokens are cut out of the raw text first, so the words around them are separate pre-tokens.
        QCOMPARE(t->encode("a<|endoftext|>b", false), ids({ascii('a'), kEndOfText, ascii('b')}));
        QCOMPARE(t->encode("<|endoftext|><|endoftext|>", false), ids({kEndOfText, kEndOfText}));
        // Longest first: "<|endoftext|>" wins over its prefix "<|end"; "<|end|>" is "<|end" and then "|>".
        QCOMPARE(t->encode("<|end|>", false), ids({kEndPrefix, ascii('|'), ascii('>')}));
        // An incomplete special token is plain text: "<|" is one punctuation pre-token, then "endoftext".
        const auto partial = t->encode("<|endoftext", false);
        QVERIFY(std::find(partial.begin(), partial.end(), kEndOfText) == partial.end());
        QVERIFY(t->isSpecial(kEndOfText));
        QVERIFY(!t->isSpecial(kEndPrefix));
        QCOMPARE(t->decodePiece(-1, kEndOfText), std::string());        // special tokens print nothing
        QCOMPARE(t->piece(kEndOfText), std::string("<|endoftext|>"));   // but can still be named
        QCOMPARE(t->decodePiece(-1, kEndPrefix), std::string("<|end")); // other added tokens print their content
        QCOMPARE(t->decode(t->encode("x<|end|>y", false)), std::string("x<|end|>y"));
    }

    void gpt2RoundTrips()
    {
        auto t = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        for (const std::string& text : roundTripTexts())
            QCOMPARE(t->decode(t->encode(text, false)), text);
        QCOMPARE(t->decodePiece(-1, 258), std::string(" the"));
        QCOMPARE(t->decodePiece(-1, kNewline), std::string("\n"));
        QVERIFY_THROWS_EXCEPTION(Error, t->decodePiece(-1, 275));
    }

    void llama3Style()
    {
        auto t = BpeTokenizer::fromJson(llama3Json(), "llama3.json");
        QVERIFY(t->byteLevel());
        QCOMPARE(t->bosId(), std::optional<int>(kBeginOfText)); // from TemplateProcessing
        // Case-insensitive contractions, digits in groups of three, newlines kept together.
        QCOMPARE(t->preTokenize("I'M 12345 ok\n\nyes"),
                 (std::vector<std::string>{"I", "'M", " ", "123", "45", " ok", "\n\n", "yes"}));
        // "123": "2 3" (14) -> 1 23 = 16, 270 ("Ġ1 23" needs the space); "45" has no merges: 19, 20.
        QCOMPARE(t->encode("12345", true), ids({kBeginOfText, 16, 270, 19, 20}));
        // ignore_merges: a pre-token that is a whole vocabulary entry is taken as it is.
        QCOMPARE(t->encode("xyz", false), ids({kXyz}));
        QCOMPARE(t->encode("<|begin_of_text|>Hello", false), ids({kBeginOfText, 262}));
        for (const std::string& text : roundTripTexts()) {
            const auto encoded = t->encode(text, true);
            QCOMPARE(encoded.front(), kBeginOfText);
            QCOMPARE(t->decode(encoded), text); // BOS prints nothing and strips nothing in byte-level BPE
        }
    }

    void embeddedGpt2MatchesJson()
    {
        auto fromJson = BpeTokenizer::fromJson(gpt2Json(), "gpt2.json");
        auto gguf = tokenizerFromEmbedded(embeddedFrom(gpt2Json(), ""), "gpt2.gguf");
        QCOMPARE(gguf->kind(), std::string("bpe"));
        QCOMPARE(gguf->vocabSize(), fromJson->vocabSize());
        QCOMPARE(gguf->bosId(), std::optional<int>()); // add_bos_token unset: llama.cpp adds none for gpt2
        QCOMPARE(gguf->eosId(), std::optional<int>(kEndOfText));
        for (const std::string& text : roundTripTexts()) {
            const auto expected = fromJson->encode(text, true);
            QCOMPARE(gguf->encode(text, true), expected);
            QCOMPARE(gguf->decode(expected), fromJson->decode(expected));
        }
    }

    void embeddedLlamaBpeMatchesJson()
    {
        auto fromJson = BpeTokenizer::fromJson(llama3Json(), "llama3.json");
        auto gguf = tokenizerFromEmbedded(embeddedFrom(llama3Json(), "llama-bpe"), "llama3.gguf");
        QCOMPARE(gguf->bosId(), std::optional<int>(kBeginOfText));
        for (const std::string& text : roundTripTexts())
            QCOMPARE(gguf->encode(text, true), fromJson->encode(text, true));
    }

    void embeddedQwen2SplitsDigits()
    {
        auto t = BpeTokenizer::fromEmbedded(embeddedFrom(gpt2Json(), "qwen2"), "qwen2.gguf");
        QCOMPARE(t->preTokenize("x 12345\n\nYES'S"),
                 (std::vector<std::string>{"x", " ", "1", "2", "3", "4", "5", "\n\n", "YES", "'S"}));
        // "23" is a merge, but Qwen2 pre-tokenizes digits one by one, so it never applies.
        QCOMPARE(t->encode("123", false), ids({16, 17, 18}));
    }

    void embeddedErrors()
    {
        auto v = embeddedFrom(gpt2Json(), "");
        v.merges.push_back("Ġ nosuchtoken");
        try {
            tokenizerFromEmbedded(v, "bad.gguf");
            QFAIL("accepted a merge with an unknown token");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("bad.gguf") != std::string::npos, e.what());
            QVERIFY2(std::string(e.what()).find("unknown token 'nosuchtoken'") != std::string::npos, e.what());
        }
        v = embeddedFrom(gpt2Json(), "");
        v.merges.push_back("nospace");
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "bad.gguf"));
        v = embeddedFrom(gpt2Json(), "");
        v.eos = 100000;
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "bad.gguf"));
        v = embeddedFrom(gpt2Json(), "");
        v.types.pop_back();
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "bad.gguf"));
    }

    void sentencePieceStyleJson()
    {
        auto t = BpeTokenizer::fromJson(llama2Json(), "llama2.json");
        QVERIFY(!t->byteLevel());
        QCOMPARE(t->bosId(), std::optional<int>(1));
        QCOMPARE(t->eosId(), std::optional<int>(2));
        // "hello world" -> "▁hello▁world", one word (no pre-tokenizer): ▁ h e l l o ▁ w o r l d.
        // Ranks: "l l" (0), "▁ h" (1), "▁h e" (2), "▁he ll" (3), "▁hell o" (4) -> ▁hello = 271; then "▁ w" (5),
        // "o r" (6), "▁w or" (7), "▁wor l" (8), "▁worl d" (9) -> ▁world = 276.
        QCOMPARE(t->encode("hello world", true), ids({1, 271, 276}));
        // "hi 你": ▁ h i ▁ 你. "i" and "你" are not in the vocabulary: byte fallback, <0xXX> = 3 + byte
        // (i = 0x69, 你 = E4 BD A0); "▁ h" (1) merges; the second ▁ stays 259.
        QCOMPARE(t->encode("hi 你", false), ids({268, 3 + 0x69, 259, 3 + 0xE4, 3 + 0xBD, 3 + 0xA0}));
        // After BOS the prepended space is not printed, as in llama2.c; elsewhere it is.
        QCOMPARE(t->decodePiece(1, 271), std::string("hello"));
        QCOMPARE(t->decodePiece(271, 276), std::string(" world"));
        QCOMPARE(t->decodePiece(-1, 3 + 0x0A), std::string("\n"));
        QCOMPARE(t->decodePiece(-1, 1), std::string()); // <s> is special
        for (const std::string& text : roundTripTexts()) {
            if (text.find('\0') != std::string::npos)
                continue;
            const auto encoded = t->encode(text, true);
            QCOMPARE(t->decode(std::span<const int>(encoded).subspan(1), encoded.front()), text);
        }
    }

    void malformedJsonIsAnError()
    {
        const auto dir = test::scratchDir("bpe_errors");
        auto expectError = [&](const std::string& content, const std::string& needle) {
            const auto path = dir / "tokenizer.json";
            test::writeTextFile(path, content);
            try {
                BpeTokenizer::fromJsonFile(path);
                QFAIL(("accepted a tokenizer.json that should fail with: " + needle).c_str());
            } catch (const Error& e) {
                const std::string what = e.what();
                QVERIFY2(what.find(path.string()) != std::string::npos, what.c_str());
                QVERIFY2(what.find(needle) != std::string::npos, what.c_str());
            }
        };
        expectError("{ \"model\": ", "invalid JSON");
        expectError("[1, 2, 3]", "expected a JSON object");
        expectError(R"({"version": "1.0"})", "'model'");
        expectError(R"({"model": {"type": "BPE"}})", "model.vocab");
        expectError(R"({"model": {"type": "WordPiece", "vocab": {}}})", "unsupported tokenizer model 'WordPiece'");
        expectError(R"({"model": {"vocab": {"a": -1}}})", "out of range");
        expectError(R"({"model": {"vocab": {"a": "zero"}}})", "integer id");

        json j = gpt2Json();
        j["model"]["merges"].push_back("Ġ nosuchtoken");
        expectError(j.dump(), "unknown token 'nosuchtoken'");
        j = gpt2Json();
        j["model"]["merges"].push_back("a b c");
        expectError(j.dump(), "not two tokens");
        j = gpt2Json();
        j["model"]["merges"].push_back(json::array({"x", "y"})); // "xy" is not in the vocabulary
        expectError(j.dump(), "unknown token 'xy'");
        j = llama3Json();
        j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}+";
        expectError(j.dump(), "invalid pre-tokenizer regex");
        j = gpt2Json();
        j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
        expectError(j.dump(), "unsupported pre_tokenizer 'BertPreTokenizer'");
        j = gpt2Json();
        j["added_tokens"].push_back(addedToken(-3, "<bad>", true));
        expectError(j.dump(), "out of range");
        j = llama3Json();
        j["post_processor"]["processors"][1]["special_tokens"] = json::object();
        j["post_processor"]["processors"][1]["single"][0]["SpecialToken"]["id"] = "<|nope|>";
        expectError(j.dump(), "unknown special token '<|nope|>'");
    }

    void tokenizerConfigNamesEos()
    {
        const auto dir = test::scratchDir("bpe_config");
        test::writeTextFile(dir / "tokenizer.json", gpt2Json().dump());
        test::writeTextFile(dir / "tokenizer_config.json",
                            R"({"eos_token": {"content": "<|end"}, "bos_token": "<|endoftext|>",)"
                            R"( "add_bos_token": true})");
        auto t = BpeTokenizer::fromJsonFile(dir / "tokenizer.json");
        QCOMPARE(t->eosId(), std::optional<int>(kEndPrefix));
        QCOMPARE(t->bosId(), std::optional<int>(kEndOfText));
        QCOMPARE(t->encode("Hello", true), ids({kEndOfText, 262}));
        // A broken hint file is ignored.
        test::writeTextFile(dir / "tokenizer_config.json", "{ broken");
        QCOMPARE(BpeTokenizer::fromJsonFile(dir / "tokenizer.json")->eosId(), std::optional<int>(kEndOfText));
    }

    void splitBehaviors()
    {
        SplitRegex digits(R"(\d)", false, "x");
        QCOMPARE(digits.split("a1b22c", SplitBehavior::Isolated),
                 (std::vector<std::string_view>{"a", "1", "b", "2", "2", "c"}));
        QCOMPARE(digits.split("a1b22c", SplitBehavior::Removed), (std::vector<std::string_view>{"a", "b", "c"}));
        QCOMPARE(digits.split("a1b22c", SplitBehavior::MergedWithPrevious),
                 (std::vector<std::string_view>{"a1", "b2", "2", "c"}));
        QCOMPARE(digits.split("a1b22c", SplitBehavior::MergedWithNext),
                 (std::vector<std::string_view>{"a", "1b", "2", "2c"}));
        QCOMPARE(digits.split("a1b22c", SplitBehavior::Contiguous),
                 (std::vector<std::string_view>{"a", "1", "b", "22", "c"}));
        SplitRegex literal("a.b", true, "x");
        QCOMPARE(literal.split("xa.bxaxb", SplitBehavior::Isolated),
                 (std::vector<std::string_view>{"x", "a.b", "xaxb"}));
        // Invalid UTF-8 never matches and is kept between the matches.
        SplitRegex letters(R"(\p{L}+)", false, "x");
        QCOMPARE(letters.split("ab\xff\xfe" "cd", SplitBehavior::Isolated),
                 (std::vector<std::string_view>{"ab", "\xff\xfe", "cd"}));
        QVERIFY_THROWS_EXCEPTION(Error, SplitRegex("[unclosed", false, "x"));
    }
};

QTEST_GUILESS_MAIN(TestBpeTokenizer)
#include "tst_bpe_tokenizer.moc"
