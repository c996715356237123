#include "screenshot_file.h"

#include <QHash>
#include <QList>
#include <QSaveFile>

#include <algorithm>
#include <utility>

namespace mla {

QImage reduceColours(const QImage& image)
{
    const QImage rgb = image.convertToFormat(image.hasAlphaChannel() ? QImage::Format_ARGB32 : QImage::Format_RGB32);
    QHash<QRgb, qint64> counts;
    for (int y = 0; y < rgb.height(); ++y) {
        const auto* line = reinterpret_cast<const QRgb*>(rgb.constScanLine(y));
        for (int x = 0; x < rgb.width(); ++x)
            ++counts[line[x]];
    }
    QList<std::pair<qint64, QRgb>> byCount;
    byCount.reserve(counts.size());
    for (auto it = counts.cbegin(); it != counts.cend(); ++it)
        byCount.append({it.value(), it.key()});
    // Most frequent first; ties by colour value so that the same picture always gives the same table (and file).
    std::sort(byCount.begin(), byCount.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    const qsizetype exact = byCount.size() <= 256 ? byCount.size() : 16;
    QList<QRgb> table;
    for (qsizetype i = 0; i < exact; ++i)
        table.append(byCount[i].second);
    if (byCount.size() > 256) {
        static constexpr int kLevels[] = {0x00, 0x33, 0x66, 0x99, 0xcc, 0xff};
        for (const int r : kLevels)
            for (const int g : kLevels)
                for (const int b : kLevels)
                    if (!table.contains(qRgb(r, g, b)))
                        table.append(qRgb(r, g, b));
    }
    // With a colour table, Qt maps each pixel to its nearest entry; ThresholdDither keeps flat areas and text edges
    // flat (dithering would speckle them and cost more bytes than it gains).
    return rgb.convertToFormat(QImage::Format_Indexed8, table, Qt::ThresholdDither | Qt::AvoidDither);
}

bool saveScreenshot(const QImage& image, const QString& path, bool indexed, QString* error)
{
    const auto fail = [&](const QString& why) {
        if (error)
            *error = QStringLiteral("cannot write the screenshot %1: %2").arg(path, why);
        return false;
    };
    if (image.isNull())
        return fail(QStringLiteral("the picture is empty"));
    const QImage out = indexed ? reduceColours(image) : image;
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return fail(file.errorString());
    // Quality 0 is zlib's strongest compression in Qt's PNG writer: the pictures are written once and read often.
    if (!out.save(&file, "PNG", indexed ? 0 : -1)) {
        file.cancelWriting();
        return fail(file.error() != QFileDevice::NoError ? file.errorString() : QStringLiteral("the PNG encoder failed"));
    }
    if (!file.commit())
        return fail(file.errorString());
    return true;
}

} // namespace mla
