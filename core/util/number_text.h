#pragma once

#include <cstdio>
#include <string>

// Numbers as people read them in model cards and one-line summaries: printf's "%.*f" and "%.*g", the same text
// on every locale the C library runs in (the project never calls setlocale).
namespace mla {

inline std::string fixedDigits(double v, int digits)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, v);
    return text;
}

inline std::string significantDigits(double v, int digits)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.*g", digits, v);
    return text;
}

} // namespace mla
