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
// A latent's share per KV head, d_c / n_kv: a whole number when n_kv divides d_c ("16"), else the fraction with its
// value ("57/4 ≈ 14.25"). The latent is one vector shared by every KV head, so an uneven share is not rounded away.
QString perHead(std::int64_t latent, std::int64_t kvHeads);
// Why a share is not a whole number (for a tooltip); empty when it is.
QString perHeadNote(std::int64_t latent, std::int64_t kvHeads);

} // namespace mla::fmt
