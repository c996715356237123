// The window follows the light or dark palette outside the plots too (issue 18): no widget of the window carries a
// style sheet with a colour of its own, the error and warning messages and the item models' error, warning and
// difference colours are derived from the palette in use and read on it, and they follow a palette change.

#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "conversion/preview.h"
#include "main_window.h"
#include "models/generation_model.h"
#include "models/layer_preview_model.h"
#include "models/sanity_metrics_model.h"
#include "palette_colours.h"
#include "panels/notice_label.h"

#include <QApplication>
#include <QPalette>
#include <QSettings>
#include <QTest>

using namespace mla;

namespace {

// A dark palette as a desktop's dark theme sets it (Breeze Dark's main colours), and a light one.
QPalette darkPalette()
{
    QPalette p;
    p.setColor(QPalette::Window, QColor(0x20, 0x23, 0x26));
    p.setColor(QPalette::WindowText, QColor(0xfc, 0xfc, 0xfc));
    p.setColor(QPalette::Base, QColor(0x14, 0x16, 0x18));
    p.setColor(QPalette::AlternateBase, QColor(0x1d, 0x1f, 0x22));
    p.setColor(QPalette::Text, QColor(0xfc, 0xfc, 0xfc));
    p.setColor(QPalette::Button, QColor(0x29, 0x2c, 0x30));
    p.setColor(QPalette::ButtonText, QColor(0xfc, 0xfc, 0xfc));
    p.setColor(QPalette::PlaceholderText, QColor(0xa1, 0xa9, 0xb1));
    p.setColor(QPalette::Link, QColor(0x1d, 0x99, 0xf3));
    p.setColor(QPalette::Highlight, QColor(0x3d, 0xae, 0xe9));
    return p;
}

QPalette lightPalette()
{
    QPalette p;
    p.setColor(QPalette::Window, QColor(0xef, 0xf0, 0xf1));
    p.setColor(QPalette::WindowText, QColor(0x23, 0x26, 0x29));
    p.setColor(QPalette::Base, QColor(0xff, 0xff, 0xff));
    p.setColor(QPalette::AlternateBase, QColor(0xf7, 0xf7, 0xf7));
    p.setColor(QPalette::Text, QColor(0x23, 0x26, 0x29));
    p.setColor(QPalette::Button, QColor(0xfc, 0xfc, 0xfc));
    p.setColor(QPalette::ButtonText, QColor(0x23, 0x26, 0x29));
    p.setColor(QPalette::PlaceholderText, QColor(0x23, 0x26, 0x29, 128));
    p.setColor(QPalette::Link, QColor(0x29, 0x80, 0xb9));
    p.setColor(QPalette::Highlight, QColor(0x3d, 0xae, 0xe9));
    return p;
}

QPalette paletteNamed(const QString& name)
{
    return name == QLatin1String("dark") ? darkPalette() : lightPalette();
}

constexpr double kReadable = 4.5; // WCAG AA for normal text

} // namespace

class TestPaletteColours : public QObject {
    Q_OBJECT
    QPalette m_original;

private Q_SLOTS:
    void initTestCase()
    {
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString(test::scratchDir("palette_settings").string()));
        m_original = QApplication::palette();
    }

    void cleanup() { QApplication::setPalette(m_original); }

    void contrastAndReadability()
    {
        QCOMPARE(contrastRatio(Qt::black, Qt::white), 21.0);
        QCOMPARE(contrastRatio(QColor(0x80, 0x20, 0x20), QColor(0x80, 0x20, 0x20)), 1.0);
        // The error red the light theme used is too dark for a dark background: lifted until it reads, hue kept.
        const QColor red(0xd0, 0x40, 0x30);
        const QColor dark(0x20, 0x23, 0x26);
        QVERIFY(contrastRatio(red, dark) < kReadable);
        const QColor lifted = readableOn(red, {dark});
        QVERIFY(contrastRatio(lifted, dark) >= kReadable);
        QVERIFY(lifted.lightness() > red.lightness());
        QVERIFY(std::abs(lifted.hslHue() - red.hslHue()) <= 2);
    }

    void windowFollowsThePalette_data()
    {
        QTest::addColumn<QString>("palette");
        QTest::newRow("dark") << QStringLiteral("dark");
        QTest::newRow("light") << QStringLiteral("light");
    }

    void windowFollowsThePalette()
    {
        QFETCH(QString, palette);
        const QPalette pal = paletteNamed(palette);
        QApplication::setPalette(pal);
        MainWindow w(MainWindow::Options{false, false});
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        // Nothing overrides the palette with a colour of its own (style sheets were how the messages were red).
        for (QWidget* child : w.findChildren<QWidget*>())
            QVERIFY2(!child->styleSheet().contains(QLatin1String("color"), Qt::CaseInsensitive),
                     qPrintable(QStringLiteral("%1: %2").arg(QString::fromLatin1(child->metaObject()->className()), child->styleSheet())));
        // The preview's problem and warning and the sanity check's prompt warning.
        const QList<NoticeLabel*> notices = w.findChildren<NoticeLabel*>();
        QVERIFY(notices.size() >= 3);
        for (NoticeLabel* label : notices) {
            const QColor text = label->palette().color(QPalette::WindowText);
            const QColor background = label->palette().color(QPalette::Window);
            QCOMPARE(background, pal.color(QPalette::Window)); // the window's, not a colour of its own
            QVERIFY2(contrastRatio(text, background) >= kReadable,
                     qPrintable(QStringLiteral("%1 on %2: %3").arg(text.name(), background.name()).arg(contrastRatio(text, background))));
            QVERIFY(text != pal.color(QPalette::WindowText)); // still marked as an error or a warning
        }
        // A palette change while the window is open (the desktop switched themes): the messages follow.
        const QPalette other = paletteNamed(palette == QLatin1String("dark") ? QStringLiteral("light") : QStringLiteral("dark"));
        QApplication::setPalette(other);
        for (NoticeLabel* label : notices) {
            QTRY_COMPARE(label->palette().color(QPalette::Window), other.color(QPalette::Window)); // delivered as events
            QVERIFY(contrastRatio(label->palette().color(QPalette::WindowText), other.color(QPalette::Window)) >= kReadable);
        }
    }

    void modelColoursReadOnThePalette_data() { windowFollowsThePalette_data(); }

    void modelColoursReadOnThePalette()
    {
        QFETCH(QString, palette);
        const QPalette pal = paletteNamed(palette);
        QApplication::setPalette(pal);
        const QColor base = pal.color(QPalette::Base), alternate = pal.color(QPalette::AlternateBase);

        // A layer whose predicted error is high is marked in the error colour.
        const AnalysisResult a = test::syntheticAnalysis(test::threeLayerShape());
        ConversionSettings s;
        s.ropePairs = 1;
        s.latentDim = 12;
        ConversionPreview p = previewConversion(a, s, 100000);
        QVERIFY(p.problem.empty());
        p.layers[0].weightError = 0.9;
        LayerPreviewModel layers;
        layers.setPreview(p, std::vector<bool>(p.layers.size(), false), 4);
        const QVariant layerColour = layers.index(0, LayerPreviewModel::WeightErrorColumn).data(Qt::ForegroundRole);
        QVERIFY(layerColour.canConvert<QColor>());
        for (const QColor& bg : {base, alternate})
            QVERIFY2(contrastRatio(layerColour.value<QColor>(), bg) >= kReadable, qPrintable(layerColour.value<QColor>().name() + QStringLiteral(" on ") + bg.name()));

        // A sanity metric past its warning threshold (KL over 0.5).
        SanityReport r;
        r.originalPpl = 3.5;
        r.convertedPpl = 4.0;
        r.kl = 0.9;
        r.top1Agreement = 0.8;
        r.evaluatedTokens = 100;
        r.withCache = {"int8/64+rope:int8/64", 4.0, 0.9, 0.8, 200};
        SanityMetricsModel metrics;
        metrics.setReport(r);
        const QVariant metricColour = metrics.index(1, SanityMetricsModel::ConvertedColumn).data(Qt::ForegroundRole);
        QVERIFY(metricColour.canConvert<QColor>());
        for (const QColor& bg : {base, alternate})
            QVERIFY(contrastRatio(metricColour.value<QColor>(), bg) >= kReadable);

        // A token that differs: marked, and the palette's text reads on the mark.
        GenerationComparison g;
        g.prompt = "Once";
        g.originalIds = {10, 11, 12};
        g.convertedIds = {10, 11, 14};
        g.firstDifference = 2;
        GenerationModel generation;
        generation.setComparison(&g, nullptr);
        const QVariant mark = generation.index(2, GenerationModel::ConvertedColumn).data(Qt::BackgroundRole);
        QVERIFY(mark.canConvert<QColor>());
        const QColor markColour = mark.value<QColor>();
        QCOMPARE(markColour.alpha(), 255);
        QVERIFY(markColour != base);
        QVERIFY2(contrastRatio(pal.color(QPalette::Text), markColour) >= kReadable,
                 qPrintable(pal.color(QPalette::Text).name() + QStringLiteral(" on ") + markColour.name()));
        // Secondary text (the prompt before the generated text) is quieter than the text but still reads.
        const QColor secondary = secondaryText(pal);
        QVERIFY(contrastRatio(secondary, base) >= 3.0);
        QVERIFY(contrastRatio(secondary, base) < contrastRatio(pal.color(QPalette::Text), base));
    }
};

QTEST_MAIN(TestPaletteColours)
#include "tst_palette_colours.moc"
