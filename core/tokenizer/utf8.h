#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mla::utf8 {

// Length of the UTF-8 sequence that starts with `lead`, judged by the lead byte alone; 1 for a stray continuation
// byte or an invalid lead, so that malformed text still advances one byte at a time and no byte is ever lost.
inline std::size_t sequenceLength(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    if ((lead & 0xF8) == 0xF0)
        return 4;
    return 1;
}

// Length of the character at `text[pos]`, never running past the end and never swallowing a byte that is not a
// continuation byte (so invalid input splits into single bytes).
inline std::size_t charLength(std::string_view text, std::size_t pos)
{
    const std::size_t want = sequenceLength(static_cast<unsigned char>(text[pos]));
    std::size_t n = 1;
    while (n < want && pos + n < text.size() && (static_cast<unsigned char>(text[pos + n]) & 0xC0) == 0x80)
        ++n;
    return n;
}

inline void append(std::string& out, char32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Decodes one well-formed character at `pos`; nullopt for anything malformed, overlong or truncated.
inline std::optional<char32_t> decode(std::string_view text, std::size_t pos, std::size_t* length = nullptr)
{
    const auto lead = static_cast<unsigned char>(text[pos]);
    const std::size_t n = sequenceLength(lead);
    if (n == 1 && lead >= 0x80)
        return std::nullopt;
    if (pos + n > text.size())
        return std::nullopt;
    char32_t cp = n == 1 ? lead : n == 2 ? (lead & 0x1F) : n == 3 ? (lead & 0x0F) : (lead & 0x07);
    for (std::size_t i = 1; i < n; ++i) {
        const auto c = static_cast<unsigned char>(text[pos + i]);
        if ((c & 0xC0) != 0x80)
            return std::nullopt;
        cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr char32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < minimum[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return std::nullopt;
    if (length)
        *length = n;
    return cp;
}

// Replaces every occurrence of `from` by `to`.
inline std::string replaceAll(std::string_view text, std::string_view from, std::string_view to)
{
    std::string out;
    out.reserve(text.size());
    std::size_t pos = 0;
    while (true) {
        const std::size_t hit = from.empty() ? std::string_view::npos : text.find(from, pos);
        if (hit == std::string_view::npos) {
            out.append(text.substr(pos));
            return out;
        }
        out.append(text.substr(pos, hit - pos));
        out.append(to);
        pos = hit + from.size();
    }
}

// "<0x0A>" -> 0x0A: the spelling SentencePiece and llama2.c use for byte tokens. Exactly six characters, two hex
// digits, upper or lower case.
inline std::optional<unsigned char> parseBytePiece(std::string_view piece)
{
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>')
        return std::nullopt;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(piece[3]);
    const int lo = hex(piece[4]);
    if (hi < 0 || lo < 0)
        return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
}

inline std::string bytePiece(unsigned char byte)
{
    static constexpr char digits[] = "0123456789ABCDEF";
    return std::string("<0x") + digits[byte >> 4] + digits[byte & 15] + ">";
}

// SentencePiece's stand-in for a space, U+2581 LOWER ONE EIGHTH BLOCK.
inline constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";

} // namespace mla::utf8
