#include "document/formatting.h"

#include <QLocale>

#include <cmath>

namespace mla::fmt {

QString count(double n)
{
    const double a = std::abs(n);
    if (a >= 1e9)
        return QStringLiteral("%1 B").arg(n / 1e9, 0, 'f', 2);
    if (a >= 1e6)
        return QStringLiteral("%1 M").arg(n / 1e6, 0, 'f', 2);
    if (a >= 1e4)
        return QStringLiteral("%1 k").arg(n / 1e3, 0, 'f', 1);
    return QString::number(static_cast<std::int64_t>(std::llround(n)));
}

QString integer(std::int64_t n)
{
    return QLocale(QLocale::English).toString(static_cast<qlonglong>(n));
}

QString bytes(double b)
{
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    double v = b;
    while (std::abs(v) >= 1024.0 && u < 5) {
        v /= 1024.0;
        ++u;
    }
    const int decimals = u == 0 ? 0 : (std::abs(v) >= 100 ? 0 : (std::abs(v) >= 10 ? 1 : 2));
    return QStringLiteral("%1 %2").arg(v, 0, 'f', decimals).arg(QLatin1String(units[u]));
}

QString percent(double fraction, int decimals)
{
    return QStringLiteral("%1%").arg(fraction * 100.0, 0, 'f', decimals);
}

QString signedPercent(double fraction, int decimals)
{
    const QString body = QString::number(std::abs(fraction) * 100.0, 'f', decimals);
    if (fraction < 0)
        return QStringLiteral("\u2212%1%").arg(body);
    return QStringLiteral("+%1%").arg(body);
}

QString error(double e)
{
    if (e < 0 || std::isnan(e))
        return QStringLiteral("\u2014");
    if (e == 0.0)
        return QStringLiteral("0");
    if (e < 1e-3)
        return QString::number(e, 'e', 2);
    return QString::number(e, 'g', 3);
}

QString seconds(double s)
{
    if (s < 0)
        return QString();
    const auto total = static_cast<std::int64_t>(std::llround(s));
    if (total < 60)
        return QStringLiteral("%1 s").arg(total);
    if (total < 3600)
        return QStringLiteral("%1 min %2 s").arg(total / 60).arg(total % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1 h %2 min").arg(total / 3600).arg((total % 3600) / 60, 2, 10, QLatin1Char('0'));
}

QString perHead(std::int64_t latent, std::int64_t kvHeads)
{
    if (kvHeads <= 1 || latent % kvHeads == 0)
        return QString::number(kvHeads <= 1 ? latent : latent / kvHeads);
    return QStringLiteral("%1/%2 ≈ %3").arg(latent).arg(kvHeads).arg(static_cast<double>(latent) / static_cast<double>(kvHeads), 0, 'f', 2);
}

QString perHeadNote(std::int64_t latent, std::int64_t kvHeads)
{
    if (kvHeads <= 1 || latent % kvHeads == 0)
        return QString();
    return QStringLiteral("d_c = %1 is not a multiple of the %2 KV heads: the latent is one vector shared by all of them, so "
                          "its share per head is not a whole number (choose a multiple of %2 for an even share).")
        .arg(latent)
        .arg(kvHeads);
}

} // namespace mla::fmt
