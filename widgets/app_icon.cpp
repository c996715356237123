#include "app_icon.h"

#include <QPainter>
#include <QPainterPath>
#include <QPixmap>

namespace mla {
namespace {

QPixmap paintIcon(int size)
{
    QPixmap pm(size, size);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    const double s = size;
    QPainterPath frame;
    frame.addRoundedRect(QRectF(0.04 * s, 0.04 * s, 0.92 * s, 0.92 * s), 0.18 * s, 0.18 * s);
    p.fillPath(frame, QColor(0x1f, 0x3a, 0x5f));
    // Four tall columns (the per-head keys and values) ...
    const QColor columns[] = {QColor(0x56, 0xb4, 0xe9), QColor(0x56, 0xb4, 0xe9), QColor(0xe6, 0x9f, 0x00), QColor(0xe6, 0x9f, 0x00)};
    for (int i = 0; i < 4; ++i)
        p.fillRect(QRectF((0.16 + 0.1 * i) * s, 0.18 * s, 0.07 * s, 0.64 * s), columns[i]);
    // ... funnel into one short latent.
    QPainterPath funnel;
    funnel.moveTo(0.56 * s, 0.18 * s);
    funnel.lineTo(0.72 * s, 0.40 * s);
    funnel.lineTo(0.72 * s, 0.60 * s);
    funnel.lineTo(0.56 * s, 0.82 * s);
    funnel.closeSubpath();
    p.fillPath(funnel, QColor(255, 255, 255, 70));
    p.fillRect(QRectF(0.74 * s, 0.40 * s, 0.10 * s, 0.20 * s), QColor(0x00, 0x9e, 0x73));
    return pm;
}

} // namespace

QIcon appIcon()
{
    QIcon icon;
    for (int size : {16, 24, 32, 48, 64, 128, 256})
        icon.addPixmap(paintIcon(size));
    return icon;
}

} // namespace mla
