#include "palette_colours.h"

#include <QPalette>

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

double channel(double c)
{
    return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
}

double luminance(const QColor& c)
{
    return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF());
}

double worstContrast(const QColor& c, const QList<QColor>& backgrounds)
{
    double worst = 21.0;
    for (const QColor& b : backgrounds)
        worst = std::min(worst, contrastRatio(c, b));
    return worst;
}

// `top` over `bottom` with opacity `alpha` (0..1), opaque.
QColor over(const QColor& top, const QColor& bottom, double alpha)
{
    return QColor::fromRgbF(static_cast<float>(alpha * top.redF() + (1.0 - alpha) * bottom.redF()),
                            static_cast<float>(alpha * top.greenF() + (1.0 - alpha) * bottom.greenF()),
                            static_cast<float>(alpha * top.blueF() + (1.0 - alpha) * bottom.blueF()));
}

QColor toneHue(Tone tone)
{
    return tone == Tone::Error ? QColor(0xd0, 0x40, 0x30) : QColor(0xd3, 0x8b, 0x12);
}

} // namespace

double contrastRatio(const QColor& a, const QColor& b)
{
    const double la = luminance(a), lb = luminance(b);
    return (std::max(la, lb) + 0.05) / (std::min(la, lb) + 0.05);
}

QColor readableOn(const QColor& wanted, const QList<QColor>& backgrounds, double minimum)
{
    if (backgrounds.isEmpty())
        return wanted;
    double mean = 0.0;
    for (const QColor& b : backgrounds)
        mean += luminance(b) / static_cast<double>(backgrounds.size());
    // Lighter text on a dark background, darker on a light one (0.18: where black and white contrast equally).
    const int step = mean < 0.18 ? 8 : -8;
    QColor c = wanted.toHsl();
    while (worstContrast(c, backgrounds) < minimum) {
        const int lightness = c.lightness() + step;
        if (lightness < 0 || lightness > 255)
            break;
        c.setHsl(c.hslHue(), c.hslSaturation(), lightness);
    }
    return c.toRgb();
}

QColor toneOnWindow(const QPalette& palette, Tone tone)
{
    return readableOn(toneHue(tone), {palette.color(QPalette::Window)});
}

QColor toneOnBase(const QPalette& palette, Tone tone)
{
    return readableOn(toneHue(tone), {palette.color(QPalette::Base), palette.color(QPalette::AlternateBase)});
}

QColor differenceBackground(const QPalette& palette)
{
    // Amber over the base, as strong as the palette's text allows: a clear mark on light and on dark themes.
    const QColor amber(255, 170, 60);
    const QColor base = palette.color(QPalette::Base);
    const QColor text = palette.color(QPalette::Text);
    for (double alpha = 0.6; alpha > 0.1; alpha -= 0.05) {
        const QColor c = over(amber, base, alpha);
        if (contrastRatio(text, c) >= 4.5)
            return c;
    }
    return over(amber, base, 0.1);
}

QColor secondaryText(const QPalette& palette)
{
    // The placeholder colour may be translucent (Fusion's is the text at half opacity): as it shows on the base.
    const QColor base = palette.color(QPalette::Base);
    const QColor placeholder = palette.color(QPalette::PlaceholderText);
    return readableOn(over(placeholder, base, placeholder.alphaF()), {base}, 3.0);
}

} // namespace mla
