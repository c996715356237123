#pragma once

#include <QString>

#include <cstdint>

namespace mla::fmt {

// Human-readable numbers for tables, labels and the explainer (no arithmetic beyond choosing a unit).
QString count(double n);            // 1234567 -> "1.23 M"
QString integer(std::int64_t n);     // 1234567 -> "1,234,567"
QString bytes(double b);            // binary units: "1.50 GiB"
QString percent(double fraction, int decimals = 1); // 0.875 -> "87.5%"
QString signedPercent(double fraction, int decimals = 1); // -0.875 -> "−87.5%"
QString error(double e);            // relative error, 3 significant digits; "—" when negative (unknown)
QString seconds(double s);          // "4 s", "2 min 05 s", "1 h 02 min"

} // namespace mla::fmt
