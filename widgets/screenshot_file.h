#pragma once

#include <QImage>
#include <QString>

namespace mla {

// The picture as an indexed (8-bit) image of at most 256 colours, without dithering. A picture with no more colours
// keeps them exactly; otherwise the colour table is its 16 most frequent colours (a window's flat areas and text,
// kept exactly) and the 216 of the 6x6x6 colour cube, every pixel on the nearest. An undithered PNG of that is about
// a quarter of the full-colour file (the screenshots in docs/images: 57 to 76 KB at 1280x720); taking the 256 most
// frequent colours instead keeps more antialiasing greys, which are legible either way, at 85 to 110 KB.
QImage reduceColours(const QImage& image);

// Saves `image` as PNG (reduced by reduceColours first when `indexed`) through a temporary file renamed over `path`
// only once it is complete, so that `path` holds either its old content or the whole new picture. False, with the
// reason naming the file in `error`, when it cannot be written.
bool saveScreenshot(const QImage& image, const QString& path, bool indexed = false, QString* error = nullptr);

} // namespace mla
