// The screenshots in docs/images are the self-test tour's, saved by saveScreenshot as indexed PNGs
// (packaging/make_screenshot.sh --tour): at most 256 colours, the picture's most frequent ones kept exactly, every
// other pixel on its nearest, written whole or not at all.

#include "common/test_support.h"
#include "screenshot_file.h"

#include <QDir>
#include <QFile>
#include <QImageReader>
#include <QTest>

#include <cstdlib>
#include <limits>

using namespace mla;

namespace {

// A window-like picture: a flat background, a flat panel, and a gradient with far more than 256 colours (8,000),
// each of them on fewer pixels than the flat areas.
QImage busyPicture()
{
    QImage image(200, 120, QImage::Format_RGB32);
    image.fill(qRgb(0xef, 0xef, 0xef));
    for (int y = 10; y < 60; ++y)
        for (int x = 10; x < 190; ++x)
            image.setPixel(x, y, qRgb(0x30, 0x60, 0xa0));
    for (int y = 70; y < 110; ++y)
        for (int x = 0; x < 200; ++x)
            image.setPixel(x, y, qRgb(x, (y - 70) * 6, 255 - x));
    return image;
}

// Qt's measure of "nearest" when it maps to a colour table: the sum of the channels' differences.
int colourDistance(QRgb a, QRgb b)
{
    return std::abs(qRed(a) - qRed(b)) + std::abs(qGreen(a) - qGreen(b)) + std::abs(qBlue(a) - qBlue(b)) + std::abs(qAlpha(a) - qAlpha(b));
}

} // namespace

class TestScreenshotFile : public QObject {
    Q_OBJECT
private slots:
    void fewColoursAreKeptExactly()
    {
        QImage image(120, 40, QImage::Format_RGB32);
        for (int x = 0; x < image.width(); ++x)
            for (int y = 0; y < image.height(); ++y)
                image.setPixel(x, y, qRgb(2 * x, 255 - x, (x * 7) % 256)); // 120 colours
        const QImage reduced = reduceColours(image);
        QCOMPARE(reduced.format(), QImage::Format_Indexed8);
        QCOMPARE(reduced.size(), image.size());
        for (int x = 0; x < image.width(); ++x)
            for (int y = 0; y < image.height(); y += 13)
                QCOMPARE(reduced.pixel(x, y), image.pixel(x, y));
    }

    void manyColoursGoToTheNearestOfTheMostFrequent()
    {
        const QImage image = busyPicture();
        const QImage reduced = reduceColours(image);
        QCOMPARE(reduced.format(), QImage::Format_Indexed8);
        QVERIFY(reduced.colorCount() <= 256);
        const QList<QRgb> table = reduced.colorTable();
        // The flat areas' colours are the most frequent: kept exactly.
        QVERIFY(table.contains(qRgb(0xef, 0xef, 0xef)));
        QCOMPARE(reduced.pixel(0, 0), qRgb(0xef, 0xef, 0xef));
        QCOMPARE(reduced.pixel(100, 30), qRgb(0x30, 0x60, 0xa0));
        // Each gradient pixel takes a colour of the table at the least distance from its own.
        for (int y = 70; y < 110; y += 3)
            for (int x = 0; x < 200; x += 7) {
                const QRgb own = image.pixel(x, y);
                int nearest = std::numeric_limits<int>::max();
                for (const QRgb c : table)
                    nearest = std::min(nearest, colourDistance(own, c));
                QCOMPARE(colourDistance(own, reduced.pixel(x, y)), nearest);
            }
    }

    void savesAnIndexedPngWhole()
    {
        const QString dir = QString::fromStdString(test::scratchDir("screenshot_file_save").string());
        const QString path = QDir(dir).filePath(QStringLiteral("shot.png"));
        const QImage image = busyPicture();
        QString error;
        QVERIFY2(saveScreenshot(image, path, true, &error), qPrintable(error));
        QImageReader reader(path);
        QCOMPARE(reader.format(), QByteArray("png"));
        const QImage read = reader.read();
        QCOMPARE(read.format(), QImage::Format_Indexed8);
        QVERIFY(read.colorCount() <= 256);
        QCOMPARE(read, reduceColours(image));
        // Written through a temporary file renamed at the end: nothing but the picture is left beside it.
        QCOMPARE(QDir(dir).entryList(QDir::Files | QDir::Hidden), QStringList{QStringLiteral("shot.png")});

        // Without a number of colours, the picture is saved as it is.
        QVERIFY2(saveScreenshot(image, path, false, &error), qPrintable(error));
        QCOMPARE(QImage(path).convertToFormat(QImage::Format_RGB32), image);
    }

    void aFailureNamesTheFileAndKeepsTheOldOne()
    {
        const QString dir = QString::fromStdString(test::scratchDir("screenshot_file_fail").string());
        const QString missing = QDir(dir).filePath(QStringLiteral("no-such-folder/shot.png"));
        QString error;
        QVERIFY(!saveScreenshot(busyPicture(), missing, true, &error));
        QVERIFY2(error.contains(missing), qPrintable(error));
        QVERIFY(!QFile::exists(missing));

        const QString old = QDir(dir).filePath(QStringLiteral("old.png"));
        QVERIFY(busyPicture().save(old));
        const QByteArray before = [&] { QFile f(old); return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray(); }();
        QVERIFY(!saveScreenshot(QImage(), old, true, &error));
        QVERIFY2(error.contains(old) && error.contains(QStringLiteral("empty")), qPrintable(error));
        QFile f(old);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(f.readAll(), before);
    }
};

QTEST_MAIN(TestScreenshotFile)
#include "tst_screenshot_file.moc"
