#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace mla {

// Pre-tokenizer regexes of the common byte-level BPE families, as Hugging Face and llama.cpp spell them.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's reversible byte <-> printable character mapping: a byte-level vocabulary spells byte b as the UTF-8 of
// byteToUnicode()[b] (space is "Ġ", newline "Ċ").
const std::array<std::string, 256>& byteToUnicode();
std::optional<unsigned char> unicodeToByte(char32_t c);
// The byte-level spelling of raw bytes, and back; nullopt when a character is outside the 256 of the mapping.
std::string byteLevelEncode(std::string_view bytes);
std::optional<std::string> byteLevelDecode(std::string_view piece);

// Hugging Face SplitDelimiterBehavior: what becomes of the matched text.
enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

// Text a normalizer or pre-tokenizer may make of its input: at most this many times as long, plus a little. Real
// ones at most triple it (a space becomes "\xe2\x96\x81"); a hostile tokenizer.json that replaces one character by a
// megabyte would otherwise turn a page of text into gigabytes.
inline constexpr std::size_t kMaxTextGrowth = 16;
inline constexpr std::size_t kTextGrowthSlack = 4096;

// A PCRE2 regex (UTF and Unicode properties, so \p{L} and \s mean what they mean to Hugging Face's Oniguruma).
// Invalid UTF-8 in the text never matches and ends up in the pieces between matches, so no byte is ever lost.
// Matching runs under a step budget proportional to the text (PCRE2's match limit, raised step by step while the
// budget lasts), so a pattern with catastrophic backtracking (nested quantifiers) is an Error naming the file after
// bounded work instead of running for minutes.
class SplitRegex {
public:
    // `literal`: the pattern is plain text (a Split with a String pattern). A pattern PCRE2 rejects is an Error
    // naming `file` and PCRE2's message.
    SplitRegex(std::string_view pattern, bool literal, const std::filesystem::path& file);

    struct Span {
        std::size_t begin;
        std::size_t end;
        bool matched;
    };
    // Consecutive spans covering all of `text`: the matches and the text between them.
    std::vector<Span> spans(std::string_view text) const;
    // The pieces `behavior` makes of `text`.
    std::vector<std::string_view> split(std::string_view text, SplitBehavior behavior) const;

    // PCRE2 match-limit steps allowed for one spans() call on `bytes` bytes of text.
    static std::uint64_t stepBudget(std::size_t bytes) { return 2'000'000 + 2048 * static_cast<std::uint64_t>(bytes); }

private:
    std::shared_ptr<pcre2_real_code_8> m_code;
    std::string m_pattern;
    std::filesystem::path m_file;
};

struct PreToken {
    std::string text;
    // Starts at the very beginning of the input text (Metaspace's prepend_scheme "first" cares).
    bool atTextStart = false;
};

// A Hugging Face pre_tokenizer as a list of steps applied in order, each cutting every piece further.
class PreTokenizer {
public:
    enum class Prepend { Never, First, Always };

    void addSplit(std::shared_ptr<const SplitRegex> regex, SplitBehavior behavior);
    // ByteLevel(add_prefix_space): a space before every piece that does not start with one.
    void addSpacePrefix();
    // Metaspace: spaces become `replacement`, which is prepended per `prepend` and, with `split`, starts new pieces.
    void addMetaspace(std::string replacement, Prepend prepend, bool split);

    std::vector<PreToken> run(std::string_view text, bool atTextStart) const;
    bool empty() const { return m_steps.empty(); }
    void setFile(std::filesystem::path file) { m_file = std::move(file); } // named in errors

private:
    struct Step {
        enum class Kind { Split, SpacePrefix, Metaspace } kind = Kind::Split;
        std::shared_ptr<const SplitRegex> regex;
        SplitBehavior behavior = SplitBehavior::Isolated;
        std::string replacement;
        Prepend prepend = Prepend::Always;
        bool split = false;
    };
    std::vector<Step> m_steps;
    std::filesystem::path m_file;
};

// A Hugging Face normalizer reduced to the operations BPE tokenizers use: Prepend, Replace of a string, Strip.
// Unicode normal forms are accepted and left out: model input is nearly always NFC already.
class Normalizer {
public:
    void addPrepend(std::string text);
    void addReplace(std::string from, std::string to);
    void addStrip(bool left, bool right);

    // An Error naming the file when the output would exceed kMaxTextGrowth times the input (plus slack).
    std::string apply(std::string_view text) const;
    bool empty() const { return m_steps.empty(); }
    void setFile(std::filesystem::path file) { m_file = std::move(file); } // named in errors

private:
    struct Step {
        enum class Kind { Prepend, Replace, Strip } kind = Kind::Prepend;
        std::string a;
        std::string b;
        bool left = false;
        bool right = false;
    };
    std::vector<Step> m_steps;
    std::filesystem::path m_file;
};

} // namespace mla
