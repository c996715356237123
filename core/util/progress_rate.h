#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace mla {

// The measured rate of a long loop and the time it has left, for its progress stage ("layer 5/30, 1.8 s per
// layer, about 45 s left"), so that every front end (CLI, GUI) shows the same estimate through the one JobControl.
class ProgressRate {
public:
    explicit ProgressRate(std::string unit) : m_unit(std::move(unit)), m_start(std::chrono::steady_clock::now()) {}

    // `done` units of `total` finished (fractions allowed).
    std::string describe(double done, double total) const
    {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
        char text[160];
        const int current = static_cast<int>(std::floor(done)) + (done < total ? 1 : 0);
        if (done <= 0.0 || elapsed < 0.5) {
            std::snprintf(text, sizeof text, "%s %d/%.0f", m_unit.c_str(), current, total);
            return text;
        }
        const double perUnit = elapsed / done;
        const double left = perUnit * (total - done);
        std::snprintf(text, sizeof text, "%s %d/%.0f, %.2g s per %s, about %.0f s left", m_unit.c_str(), current, total, perUnit,
                      m_unit.c_str(), std::max(0.0, left));
        return text;
    }

private:
    std::string m_unit;
    std::chrono::steady_clock::time_point m_start;
};

} // namespace mla
