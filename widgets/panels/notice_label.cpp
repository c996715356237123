#include "panels/notice_label.h"

#include <QEvent>

namespace mla {

NoticeLabel::NoticeLabel(Tone tone, QWidget* parent) : QLabel(parent), m_tone(tone)
{
    setWordWrap(true);
    applyTone();
}

void NoticeLabel::changeEvent(QEvent* event)
{
    QLabel::changeEvent(event);
    if (event->type() == QEvent::PaletteChange)
        applyTone();
}

void NoticeLabel::applyTone()
{
    // Only the text role is set; the others keep following the parent's palette. Setting it sends one more
    // PaletteChange, which finds the colour already right.
    const QColor colour = toneOnWindow(palette(), m_tone);
    if (palette().color(QPalette::WindowText) == colour)
        return;
    QPalette p = palette();
    p.setColor(QPalette::WindowText, colour);
    setPalette(p);
}

} // namespace mla
