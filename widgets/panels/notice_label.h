#pragma once

#include "palette_colours.h"

#include <QLabel>

namespace mla {

// A word-wrapped message in the colour of its tone (an error, a warning), recomputed from the palette whenever it
// changes, so that it reads on light and dark themes alike.
class NoticeLabel : public QLabel {
    Q_OBJECT
public:
    explicit NoticeLabel(Tone tone, QWidget* parent = nullptr);
    Tone tone() const { return m_tone; }

protected:
    void changeEvent(QEvent* event) override;

private:
    void applyTone();

    Tone m_tone;
};

} // namespace mla
