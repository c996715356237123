#pragma once

#include <QColor>
#include <QList>

class QPalette;

namespace mla {

// Colours that carry a meaning (an error, a warning, a token that differs) for the palette in use, light or dark:
// the hue says what, the lightness is chosen against the palette's own background so the text stays readable on
// both. Nothing outside the plots hard-codes a colour; the plots have theirs in PlotWidget.
enum class Tone { Error, Warning };

// WCAG 2 contrast ratio of two opaque colours, 1 (same) to 21 (black on white).
double contrastRatio(const QColor& a, const QColor& b);
// `wanted`'s hue and saturation with the lightness moved away from the backgrounds until the contrast with each is
// at least `minimum` (as far as black or white allow).
QColor readableOn(const QColor& wanted, const QList<QColor>& backgrounds, double minimum = 4.5);
// Text of `tone` on the palette's window (labels) or on its base and alternate base (item views, text browsers).
QColor toneOnWindow(const QPalette& palette, Tone tone);
QColor toneOnBase(const QPalette& palette, Tone tone);
// The background that marks a token that differs between the two models (under the palette's Text), and the colour
// of secondary text (a prompt shown before the generated text) on the base.
QColor differenceBackground(const QPalette& palette);
QColor secondaryText(const QPalette& palette);

} // namespace mla
