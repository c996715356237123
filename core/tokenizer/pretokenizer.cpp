#include "tokenizer/pretokenizer.h"

#include "tokenizer/utf8.h"
#include "util/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <unordered_map>

namespace mla {

namespace {

struct ByteLevelTables {
    std::array<std::string, 256> forward;
    std::unordered_map<char32_t, unsigned char> backward;

    ByteLevelTables()
    {
        // GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes are moved to
        // U+0100 and up, in byte order.
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const char32_t c = printable ? static_cast<char32_t>(b) : next++;
            utf8::append(forward[static_cast<std::size_t>(b)], c);
            backward.emplace(c, static_cast<unsigned char>(b));
        }
    }
};

const ByteLevelTables& tables()
{
    static const ByteLevelTables t;
    return t;
}

} // namespace

const std::array<std::string, 256>& byteToUnicode()
{
    return tables().forward;
}

std::optional<unsigned char> unicodeToByte(char32_t c)
{
    const auto& backward = tables().backward;
    auto it = backward.find(c);
    if (it == backward.end())
        return std::nullopt;
    return it->second;
}

std::string byteLevelEncode(std::string_view bytes)
{
    const auto& forward = tables().forward;
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char b : bytes)
        out += forward[static_cast<unsigned char>(b)];
    return out;
}

std::optional<std::string> byteLevelDecode(std::string_view piece)
{
    std::string out;
    out.reserve(piece.size());
    std::size_t pos = 0;
    while (pos < piece.size()) {
        std::size_t length = 0;
        const auto c = utf8::decode(piece, pos, &length);
        if (!c)
            return std::nullopt;
        const auto b = unicodeToByte(*c);
        if (!b)
            return std::nullopt;
        out += static_cast<char>(*b);
        pos += length;
    }
    return out;
}

SplitRegex::SplitRegex(std::string_view pattern, bool literal, const std::filesystem::path& file)
    : m_pattern(pattern.substr(0, 200)), m_file(file)
{
    if (pattern.size() > (64u << 10))
        throw Error(file, "pre-tokenizer regex of " + std::to_string(pattern.size()) + " bytes is implausibly long (at most 64 KiB)");
    int errorCode = 0;
    PCRE2_SIZE errorOffset = 0;
    // MATCH_INVALID_UTF: model input is untrusted bytes, and PCRE2 would otherwise refuse a whole text for one bad
    // byte. UCP makes \s, \w and friends Unicode-aware as in Oniguruma; it is not allowed together with LITERAL.
    std::uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    options |= literal ? PCRE2_LITERAL : PCRE2_UCP;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                     &errorCode, &errorOffset, nullptr);
    if (!code) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(errorCode, message, sizeof message);
        throw Error(file, "invalid pre-tokenizer regex '" + std::string(pattern) + "' at offset "
                              + std::to_string(errorOffset) + ": " + reinterpret_cast<const char*>(message));
    }
    // The JIT is an optimisation only; without it (an unsupported CPU, a locked-down kernel) matching still works.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    m_code.reset(code, [](pcre2_code* c) { pcre2_code_free(c); });
}

namespace {

// One match context and JIT stack per thread, reused by every match: the limits are set per call.
struct MatchResources {
    pcre2_match_context* context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 << 10, 4 << 20, nullptr);
    MatchResources()
    {
        if (context && stack)
            pcre2_jit_stack_assign(context, nullptr, stack);
    }
    ~MatchResources()
    {
        pcre2_jit_stack_free(stack);
        pcre2_match_context_free(context);
    }
};

bool isResourceLimit(int rc)
{
    return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT
           || rc == PCRE2_ERROR_JIT_STACKLIMIT;
}

} // namespace

std::vector<SplitRegex::Span> SplitRegex::spans(std::string_view text) const
{
    std::vector<Span> out;
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> match(
        pcre2_match_data_create_from_pattern(m_code.get(), nullptr), pcre2_match_data_free);
    thread_local MatchResources resources;
    if (!match || !resources.context)
        throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    // Each match starts with a small step limit, raised fourfold while it is hit; every attempt is charged its limit
    // (an upper bound on its work) to a budget proportional to the text. Ordinary patterns match in a few steps per
    // character and never come near it; catastrophic backtracking exhausts it after bounded work.
    std::uint64_t budget = stepBudget(text.size());
    auto matchAt = [&](std::size_t pos) {
        std::uint64_t limit = 1024;
        for (;;) {
            limit = std::min(limit, budget);
            pcre2_set_match_limit(resources.context, static_cast<std::uint32_t>(std::min<std::uint64_t>(limit, 0xFFFFFFFFu)));
            const int rc = pcre2_match(m_code.get(), subject, text.size(), pos, 0, match.get(), resources.context);
            budget -= limit;
            if (!isResourceLimit(rc))
                return rc;
            if (budget == 0)
                throw Error(m_file, "pre-tokenizer regex '" + m_pattern + "' needs more than " + std::to_string(stepBudget(text.size()))
                                        + " matching steps on a text of " + std::to_string(text.size())
                                        + " bytes (catastrophic backtracking); refusing it");
            limit *= 4;
        }
    };
    std::size_t gapStart = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const int rc = matchAt(pos);
        if (rc < 0)
            break; // PCRE2_ERROR_NOMATCH (or an error of the text): the rest is one unmatched span
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
        const std::size_t begin = ovector[0];
        const std::size_t end = ovector[1];
        if (end <= begin) {
            // An empty match cuts nothing; step over one character and look again.
            pos = begin + utf8::charLength(text, begin);
            continue;
        }
        if (begin > gapStart)
            out.push_back({gapStart, begin, false});
        out.push_back({begin, end, true});
        gapStart = pos = end;
    }
    if (gapStart < text.size())
        out.push_back({gapStart, text.size(), false});
    return out;
}

std::vector<std::string_view> SplitRegex::split(std::string_view text, SplitBehavior behavior) const
{
    const std::vector<Span> all = spans(text);
    std::vector<std::string_view> out;
    auto piece = [&](std::size_t b, std::size_t e) {
        if (e > b)
            out.push_back(text.substr(b, e - b));
    };
    switch (behavior) {
    case SplitBehavior::Isolated:
        for (const Span& s : all)
            piece(s.begin, s.end);
        break;
    case SplitBehavior::Removed:
        for (const Span& s : all)
            if (!s.matched)
                piece(s.begin, s.end);
        break;
    case SplitBehavior::MergedWithPrevious: {
        // A piece ends after each match.
        std::size_t start = 0;
        for (const Span& s : all)
            if (s.matched) {
                piece(start, s.end);
                start = s.end;
            }
        piece(start, text.size());
        break;
    }
    case SplitBehavior::MergedWithNext: {
        // A piece starts at each match.
        std::size_t start = 0;
        for (const Span& s : all)
            if (s.matched) {
                piece(start, s.begin);
                start = s.begin;
            }
        piece(start, text.size());
        break;
    }
    case SplitBehavior::Contiguous: {
        // Runs of adjacent matches become one piece.
        std::size_t i = 0;
        while (i < all.size()) {
            std::size_t j = i + 1;
            if (all[i].matched)
                while (j < all.size() && all[j].matched)
                    ++j;
            piece(all[i].begin, all[j - 1].end);
            i = j;
        }
        break;
    }
    }
    return out;
}

void PreTokenizer::addSplit(std::shared_ptr<const SplitRegex> regex, SplitBehavior behavior)
{
    Step s;
    s.kind = Step::Kind::Split;
    s.regex = std::move(regex);
    s.behavior = behavior;
    m_steps.push_back(std::move(s));
}

void PreTokenizer::addSpacePrefix()
{
    Step s;
    s.kind = Step::Kind::SpacePrefix;
    m_steps.push_back(std::move(s));
}

void PreTokenizer::addMetaspace(std::string replacement, Prepend prepend, bool split)
{
    Step s;
    s.kind = Step::Kind::Metaspace;
    s.replacement = std::move(replacement);
    s.prepend = prepend;
    s.split = split;
    m_steps.push_back(std::move(s));
}

std::vector<PreToken> PreTokenizer::run(std::string_view text, bool atTextStart) const
{
    std::vector<PreToken> pieces;
    pieces.push_back({std::string(text), atTextStart});
    const std::size_t limit = kMaxTextGrowth * text.size() + kTextGrowthSlack;
    for (const Step& step : m_steps) {
        // What a space prefix or Metaspace step can add: a replacement per space and one in front of every piece.
        if (step.kind != Step::Kind::Split) {
            std::size_t bound = 0;
            for (const PreToken& p : pieces) {
                const std::size_t spaces = step.kind == Step::Kind::Metaspace
                                               ? static_cast<std::size_t>(std::count(p.text.begin(), p.text.end(), ' '))
                                               : 0;
                bound += p.text.size() + (spaces + 1) * std::max<std::size_t>(step.replacement.size(), 1);
            }
            if (bound > limit)
                throw Error(m_file, "the pre-tokenizer would turn " + std::to_string(text.size()) + " bytes of text into up to "
                                        + std::to_string(bound) + " bytes (more than " + std::to_string(kMaxTextGrowth)
                                        + " times as long); refusing it");
        }
        std::vector<PreToken> next;
        next.reserve(pieces.size());
        for (PreToken& p : pieces) {
            switch (step.kind) {
            case Step::Kind::Split: {
                for (std::string_view part : step.regex->split(p.text, step.behavior))
                    next.push_back({std::string(part), p.atTextStart && part.data() == p.text.data()});
                break;
            }
            case Step::Kind::SpacePrefix:
                if (p.text.empty() || p.text.front() != ' ')
                    p.text = " " + p.text;
                next.push_back(std::move(p));
                break;
            case Step::Kind::Metaspace: {
                std::string s = utf8::replaceAll(p.text, " ", step.replacement);
                const bool prepend = step.prepend == Prepend::Always
                                  || (step.prepend == Prepend::First && p.atTextStart);
                if (prepend && !s.starts_with(step.replacement))
                    s = step.replacement + s;
                if (!step.split || step.replacement.empty()) {
                    next.push_back({std::move(s), p.atTextStart});
                    break;
                }
                // MergedWithNext on the replacement: every replacement character starts a new piece.
                std::size_t start = 0;
                std::size_t from = 0;
                for (std::size_t hit; (hit = s.find(step.replacement, from)) != std::string::npos;) {
                    if (hit > start) {
                        next.push_back({s.substr(start, hit - start), p.atTextStart && start == 0});
                        start = hit;
                    }
                    from = hit + step.replacement.size();
                }
                if (start < s.size())
                    next.push_back({s.substr(start), p.atTextStart && start == 0});
                break;
            }
            }
        }
        pieces = std::move(next);
    }
    return pieces;
}

void Normalizer::addPrepend(std::string text)
{
    m_steps.push_back(Step{Step::Kind::Prepend, std::move(text), {}});
}

void Normalizer::addReplace(std::string from, std::string to)
{
    m_steps.push_back(Step{Step::Kind::Replace, std::move(from), std::move(to)});
}

void Normalizer::addStrip(bool left, bool right)
{
    Step s{Step::Kind::Strip, {}, {}};
    s.left = left;
    s.right = right;
    m_steps.push_back(std::move(s));
}

std::string Normalizer::apply(std::string_view text) const
{
    std::string s(text);
    const std::size_t limit = kMaxTextGrowth * text.size() + kTextGrowthSlack;
    auto refuse = [&](std::size_t size) {
        throw Error(m_file, "the normalizer would turn " + std::to_string(text.size()) + " bytes of text into "
                                + std::to_string(size) + " bytes (more than " + std::to_string(kMaxTextGrowth)
                                + " times as long); refusing it");
    };
    for (const Step& step : m_steps) {
        switch (step.kind) {
        case Step::Kind::Prepend:
            if (s.size() + step.a.size() > limit)
                refuse(s.size() + step.a.size());
            if (!s.empty())
                s.insert(0, step.a);
            break;
        case Step::Kind::Replace: {
            // The size is known before anything is built: the count of matches times the growth of each.
            if (step.b.size() > step.a.size() && !step.a.empty()) {
                std::size_t hits = 0;
                for (std::size_t at = s.find(step.a); at != std::string::npos; at = s.find(step.a, at + step.a.size()))
                    ++hits;
                const std::size_t size = s.size() + hits * (step.b.size() - step.a.size());
                if (size > limit)
                    refuse(size);
            }
            s = utf8::replaceAll(s, step.a, step.b);
            break;
        }
        case Step::Kind::Strip: {
            auto isSpace = [](char c) {
                return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
            };
            std::size_t b = 0;
            std::size_t e = s.size();
            if (step.left)
                while (b < e && isSpace(s[b]))
                    ++b;
            if (step.right)
                while (e > b && isSpace(s[e - 1]))
                    --e;
            s = s.substr(b, e - b);
            break;
        }
        }
    }
    return s;
}

} // namespace mla
