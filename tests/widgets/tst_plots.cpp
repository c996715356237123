// Our plot widgets: the one export path (PNG, PDF, SVG, CSV) for each, hover texts, the heatmap's outlines and
// log scale, the spectrum's rank cursor, palette changes.

#include "common/test_support.h"
#include "plots/bar_plot.h"
#include "plots/heatmap_plot.h"
#include "plots/memory_plot.h"
#include "plots/qcustomplot_include.h"
#include "plots/spectrum_plot.h"
#include "common/synthetic_analysis.h"
#include "view_data/view_data.h"

#include <QApplication>
#include <QFile>
#include <QImage>
#include <QSignalSpy>
#include <QTest>

using namespace mla;

namespace {

// Resizes a plot widget and lets it settle: the resize and the replot it queued, then a replot the layout asked for
// (the legend bands are re-measured after each layout).
void resizeAndSettle(QWidget& widget, QCustomPlot* plot, QSize size)
{
    widget.resize(size);
    QApplication::processEvents();
    plot->replot();
    QApplication::processEvents();
}

ModelConfig shape()
{
    ModelConfig c;
    c.hidden = 128;
    c.layers = 4;
    c.heads = 4;
    c.kvHeads = 2;
    c.headDim = 16;
    c.vocab = 100;
    c.maxPositions = 512;
    c.ffn = 256;
    return c;
}

QByteArray readAll(const QString& path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

void fill(PlotWidget* plot, const AnalysisResult& a)
{
    if (auto* h = qobject_cast<HeatmapPlot*>(plot)) {
        h->setGrid(view::ropeScoreGrid(a, view::ScoreMeasure::TwoNorm, -1, a.selections()), view::pairFrequencies(a.config), QStringLiteral("2-norm score"));
    } else if (auto* s = qobject_cast<SpectrumPlot*>(plot)) {
        QList<SpectrumPlot::Series> series;
        for (std::size_t l = 0; l < a.layers.size(); ++l)
            series.append({QStringLiteral("layer %1").arg(l), a.layers[l].weightSpectra.joint,
                           view::retainedEnergy(a.layers[l].weightSpectra, view::SpectrumKind::Joint), l / 3.0, false});
        s->setSeries(series, QStringLiteral("singular value"));
        s->setRankLimits(1, 64);
        s->setRankCursor(16, true);
    } else if (auto* b = qobject_cast<BarPlot*>(plot)) {
        b->setData({QStringLiteral("0"), QStringLiteral("1"), QStringLiteral("2")},
                   {{QStringLiteral("weights"), {0.1, 0.2, 0.3}}, {QStringLiteral("activations"), {0.05, -1.0, 0.15}}},
                   QStringLiteral("layer"), QStringLiteral("error"));
    } else if (auto* m = qobject_cast<MemoryPlot*>(plot)) {
        m->setCurves({128, 256, 512}, {{QStringLiteral("original"), {1e6, 2e6, 4e6}, 1, Qt::SolidLine, false},
                                       {QStringLiteral("MLA"), {2.5e5, 5e5, 1e6}, 0, Qt::SolidLine, true}});
        m->setMarker(256);
    }
}

} // namespace

class TestPlots : public QObject {
    Q_OBJECT
    AnalysisResult m_analysis;

private Q_SLOTS:
    void initTestCase() { m_analysis = test::syntheticAnalysis(shape()); }

    void exportEveryFormat_data()
    {
        QTest::addColumn<QString>("kind");
        for (const char* k : {"heatmap", "spectrum", "bars", "memory"})
            QTest::newRow(k) << QString::fromLatin1(k);
    }

    void exportEveryFormat()
    {
        QFETCH(QString, kind);
        std::unique_ptr<PlotWidget> plot;
        if (kind == QLatin1String("heatmap"))
            plot = std::make_unique<HeatmapPlot>();
        else if (kind == QLatin1String("spectrum"))
            plot = std::make_unique<SpectrumPlot>();
        else if (kind == QLatin1String("bars"))
            plot = std::make_unique<BarPlot>();
        else
            plot = std::make_unique<MemoryPlot>();
        plot->resize(640, 420);
        plot->show();
        QVERIFY(QTest::qWaitForWindowExposed(plot.get()));

        // Before any data, CSV export refuses with a reason.
        const auto dir = test::scratchDir((QStringLiteral("plots_") + kind).toStdString());
        const QString base = QString::fromStdString((dir / kind.toStdString()).string());
        QString error;
        QVERIFY(!plot->exportTo(base + QStringLiteral("-empty.csv"), &error));
        QVERIFY(!error.isEmpty());

        fill(plot.get(), m_analysis);
        QSignalSpy exported(plot.get(), &PlotWidget::exported);
        for (const QString& format : PlotWidget::exportFormats()) {
            const QString path = base + QLatin1Char('.') + format;
            QVERIFY2(plot->exportTo(path, &error), qPrintable(format + QStringLiteral(": ") + error));
            const QByteArray data = readAll(path);
            // Images carry at least a header and a frame; the CSV of the small bar fixture (3 layers) is legitimately
            // short, so it is checked by its content below instead.
            QVERIFY2(data.size() > (format == QLatin1String("csv") ? 20 : 100), qPrintable(path));
            if (format == QLatin1String("png")) {
                QImage image;
                QVERIFY(image.loadFromData(data, "PNG"));
                QCOMPARE(image.width(), 2 * 640); // exported at twice the size: sharp on high-DPI screens and in print
            } else if (format == QLatin1String("pdf")) {
                QVERIFY(data.startsWith("%PDF"));
            } else if (format == QLatin1String("svg")) {
                QVERIFY(data.startsWith("<?xml"));
                QVERIFY(data.contains("<svg"));
                QVERIFY(data.contains("</svg>"));
                QVERIFY2(data.contains("<text"), "axis labels must stay text");
                QVERIFY(data.contains("<polyline") || data.contains("<path") || data.contains("<rect") || data.contains("<image"));
            } else {
                const QStringList lines = QString::fromUtf8(data).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
                QVERIFY(lines.size() >= 3);
                QVERIFY(!lines.front().at(0).isDigit()); // a header first
                if (kind == QLatin1String("bars")) {
                    QCOMPARE(lines.size(), 4); // the header and one row per category
                    QCOMPARE(lines[1], QStringLiteral("0,0.1,0.05"));
                    QCOMPARE(lines[2], QStringLiteral("1,0.2,")); // a missing value stays an empty cell
                }
            }
        }
        QCOMPARE(exported.count(), 4);
        QVERIFY(!plot->exportTo(base + QStringLiteral(".bmpx"), &error));
        QVERIFY(error.contains(QStringLiteral("bmpx")));
        QVERIFY(!plot->renderImage().isNull());
    }

    void heatmapOutlinesAndHover()
    {
        HeatmapPlot plot;
        plot.resize(700, 400);
        plot.show();
        QVERIFY(QTest::qWaitForWindowExposed(&plot));
        const auto selections = m_analysis.selections();
        plot.setGrid(view::ropeScoreGrid(m_analysis, view::ScoreMeasure::TwoNorm, 1, selections), view::pairFrequencies(m_analysis.config),
                     QStringLiteral("2-norm score"));
        const view::ScoreGrid& g = plot.grid();
        QCOMPARE(g.rows, 4);
        QCOMPARE(g.columns, 8);
        QCOMPARE(g.firstHead, 1);
        const std::int64_t p = defaultRopePairs(m_analysis.config);
        QCOMPARE(std::count(g.kept.begin(), g.kept.end(), std::uint8_t{1}), 4 * p);
        const int keptPair = selections[2][1].front();
        QVERIFY(g.isKept(2, keptPair));
        QCOMPARE(g.value(2, 3), m_analysis.layers[2].scores.perKvHead(1, 3));

        const QString text = plot.cellText(2, 3);
        const auto freqs = view::pairFrequencies(m_analysis.config);
        QVERIFY(text.contains(QStringLiteral("layer 2")));
        QVERIFY(text.contains(QStringLiteral("KV head 1")));
        QVERIFY(text.contains(QStringLiteral("pair 3")));
        QVERIFY(text.contains(QString::number(freqs[3].wavelength, 'g', 5)));
        QVERIFY(plot.cellText(9, 0).isEmpty());

        // Outlines follow new selections without rebuilding the values.
        std::vector<LayerPairSelection> none(4, LayerPairSelection(2));
        plot.updateKept(none);
        QCOMPARE(std::count(plot.grid().kept.begin(), plot.grid().kept.end(), std::uint8_t{1}), 0);

        QSignalSpy logChanged(&plot, &HeatmapPlot::logScaleChanged);
        plot.setLogScale(true);
        QVERIFY(plot.logScale());
        QCOMPARE(logChanged.count(), 1);
        // The cell under the middle of the plot area is a real cell.
        const auto [row, col] = plot.cellAt(QPoint(plot.width() / 2 - 40, plot.height() / 2));
        QVERIFY(row >= 0 && col >= 0);
    }

    // An all-heads view with cells too narrow to outline one by one (32 layers x 512 cells of 8 KV heads in 900 px; a
    // 7B model's 2048 columns take the same path): kept cells show as bright marks on the screen and in an export, and
    // a new selection moves them (the outline layer alone is repainted).
    void denseHeatmapOutlinesFollowKept()
    {
        view::ScoreGrid g;
        g.rows = 32;
        g.heads = 8;
        g.pairsPerHead = 64;
        g.columns = g.heads * g.pairsPerHead;
        for (std::int64_t i = 0; i < g.rows * g.columns; ++i)
            g.values.push_back(0.1 + 0.8 * static_cast<double>((i * 7919) % 101) / 101.0);
        g.kept.assign(g.values.size(), 0);
        g.maximum = 1.0;
        g.minPositive = 0.1;
        auto keep = [&](int pair) {
            return std::vector<LayerPairSelection>(32, LayerPairSelection(8, std::vector<int>{pair}));
        };
        view::markKept(g, keep(3));
        HeatmapPlot plot;
        plot.resize(900, 500);
        plot.show();
        QVERIFY(QTest::qWaitForWindowExposed(&plot));
        plot.setGrid(g, {}, QStringLiteral("2-norm score"));
        QCoreApplication::processEvents();
        // The widget pixels of a cell a third of the way down its row (the row's middle has the axis tick), found
        // through the hover lookup.
        auto pixelsOf = [&](std::int64_t row, std::int64_t column) {
            std::vector<QPoint> points;
            int y0 = -1, y1 = -1;
            for (int y = 0; y < plot.height(); ++y) {
                if (plot.cellAt(QPoint(plot.width() / 2, y)).first == row) {
                    y0 = y0 < 0 ? y : y0;
                    y1 = y;
                }
            }
            const int y = y0 + (y1 - y0) / 3;
            for (int x = 0; x < plot.width(); ++x) {
                if (plot.cellAt(QPoint(x, y)).second == column)
                    points.emplace_back(x, y);
            }
            return points;
        };
        QVERIFY(pixelsOf(0, 1).size() < 4); // the dense case: cells a few pixels wide
        // Whether the cell shows white (the inside of a kept cell's mark).
        auto marked = [&](const QImage& image, std::int64_t row, std::int64_t column) {
            const auto points = pixelsOf(row, column);
            return std::any_of(points.begin(), points.end(), [&](const QPoint& at) {
                return image.pixelColor(at * image.devicePixelRatio()) == QColor(255, 255, 255);
            });
        };
        QImage shown = plot.grab().toImage();
        for (std::int64_t row : {0, 5, 31}) {
            for (std::int64_t head : {0, 3, 7}) {
                QVERIFY(marked(shown, row, head * 64 + 3));
                QVERIFY(!marked(shown, row, head * 64 + 40));
            }
        }
        plot.updateKept(keep(40));
        QCoreApplication::processEvents();
        shown = plot.grab().toImage();
        for (std::int64_t row : {0, 5, 31}) {
            for (std::int64_t head : {0, 3, 7}) {
                QVERIFY(!marked(shown, row, head * 64 + 3));
                QVERIFY(marked(shown, row, head * 64 + 40));
            }
        }
        // An exported PNG shows them too.
        const QImage exported = plot.renderImage(1.0);
        QVERIFY(marked(exported, 5, 3 * 64 + 40));
        QVERIFY(!marked(exported, 5, 3 * 64 + 3));
    }

    void spectrumCursorDrag()
    {
        SpectrumPlot plot;
        plot.resize(700, 500);
        plot.show();
        QVERIFY(QTest::qWaitForWindowExposed(&plot));
        fill(&plot, m_analysis);
        QCOMPARE(plot.seriesCount(), 4);
        QVERIFY(plot.rankCursorVisible());
        QSignalSpy dragged(&plot, &SpectrumPlot::rankDragged);
        QSignalSpy done(&plot, &SpectrumPlot::rankDragFinished);
        plot.dragCursorTo(30);
        QCOMPARE(plot.rankCursor(), 30);
        QCOMPARE(dragged.count(), 1);
        QCOMPARE(done.at(0).at(0).toLongLong(), 30LL);
        plot.dragCursorTo(1000); // clamped to the limit
        QCOMPARE(plot.rankCursor(), 64);

        // A real mouse drag in the plot area moves the cursor too.
        dragged.clear();
        QWidget* canvas = plot.findChild<QCustomPlot*>();
        QVERIFY(canvas);
        QTest::mousePress(canvas, Qt::LeftButton, {}, QPoint(canvas->width() / 3, canvas->height() / 4));
        QTest::mouseRelease(canvas, Qt::LeftButton, {}, QPoint(canvas->width() / 3, canvas->height() / 4));
        QVERIFY(dragged.count() >= 1);
        QVERIFY(plot.rankCursor() >= 1 && plot.rankCursor() < 64);
        plot.setRankCursor(5, false);
        QVERIFY(!plot.rankCursorVisible());
    }

    void memoryHoverAndBars()
    {
        MemoryPlot memory;
        fill(&memory, m_analysis);
        const QString text = memory.valuesAt(300);
        QVERIFY(text.contains(QStringLiteral("256 tokens")));
        QVERIFY(text.contains(QStringLiteral("1.91 MiB")));
        QVERIFY(text.contains(QStringLiteral("488 KiB")));
        QVERIFY(memory.csv().startsWith(QStringLiteral("context_tokens")));

        BarPlot bars;
        fill(&bars, m_analysis);
        QCOMPARE(bars.barText(1, 0), QStringLiteral("layer 1 · weights: 0.2"));
        QVERIFY(bars.barText(1, 1).isEmpty()); // unknown value
        QVERIFY(bars.csv().contains(QStringLiteral("1,0.2,\n")));
    }

    void measuredMemoryPointsHaveNoLine()
    {
        // The sanity check's measured bytes are points over the formula curves, not another formula line.
        MemoryPlot memory;
        MemoryPlot::Curve formula{QStringLiteral("MLA · int4/64+rope:int8/64"), {1280, 2560}, 0, Qt::DotLine, true};
        MemoryPlot::Curve measured{QStringLiteral("measured · MLA · int4/64+rope:int8/64"), {1280, 2560}, 0, Qt::NoPen, true};
        measured.measured = true;
        memory.setCurves({128, 256}, {formula, measured});
        auto* p = memory.findChild<QCustomPlot*>();
        QVERIFY(p);
        QCOMPARE(p->graphCount(), 2);
        QVERIFY(p->graph(0)->lineStyle() != QCPGraph::lsNone);
        QCOMPARE(p->graph(1)->lineStyle(), QCPGraph::lsNone);
        QCOMPARE(p->graph(1)->scatterStyle().shape(), QCPScatterStyle::ssDiamond);
        QVERIFY(memory.valuesAt(256).contains(QStringLiteral("measured · MLA · int4/64+rope:int8/64: 2.50 KiB")));
    }

    void emptyMemoryPlotShowsAMessage()
    {
        // Issue 18: an empty plot kept the last model's axes; now the axes go and a message says why.
        MemoryPlot memory;
        memory.setPlaceholder(QStringLiteral("Open a model to begin"));
        auto* p = memory.findChild<QCustomPlot*>();
        QVERIFY(memory.showsPlaceholder());
        QVERIFY(!p->xAxis->visible() && !p->yAxis->visible());
        auto visibleText = [p] {
            for (int i = 0; i < p->itemCount(); ++i)
                if (auto* t = qobject_cast<QCPItemText*>(p->item(i)); t && t->visible())
                    return t->text();
            return QString();
        };
        QCOMPARE(visibleText(), QStringLiteral("Open a model to begin"));
        memory.setCurves({128, 256}, {{QStringLiteral("original · BF16"), {10, 20}, 1, Qt::SolidLine, false}});
        memory.setMarker(200);
        QVERIFY(!memory.showsPlaceholder());
        QVERIFY(p->xAxis->visible() && p->yAxis->visible());
        QCOMPARE(visibleText(), QString());
        memory.setCurves({}, {});
        QVERIFY(!p->xAxis->visible());
        QCOMPARE(visibleText(), QStringLiteral("Open a model to begin"));
    }

    void followsThePalette()
    {
        BarPlot plot;
        fill(&plot, m_analysis);
        plot.resize(400, 300);
        QPalette dark = plot.palette();
        dark.setColor(QPalette::Base, QColor(20, 20, 20));
        dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
        plot.setPalette(dark);
        const QImage image = plot.renderImage();
        // The background is the dark base colour, not QCustomPlot's white.
        QCOMPARE(image.pixelColor(2, 2), QColor(20, 20, 20));
    }

    void thirtyLayerLabelsAreThinnedToFit()
    {
        // Issue 18: 30 layer labels overlapped on the predicted-error bars.
        BarPlot bars;
        QStringList layers;
        BarPlot::Series s{QStringLiteral("weights"), {}};
        for (int l = 0; l < 30; ++l) {
            layers << QString::number(l);
            s.values.push_back(0.1 + 0.01 * l);
        }
        bars.show();
        bars.resize(300, 200);
        bars.setData(layers, {s}, QStringLiteral("layer"), QStringLiteral("error"));
        QVERIFY2(bars.categoryLabelStep() > 1, "30 labels drawn on a 300-pixel axis");
        const int labelWidth = bars.fontMetrics().horizontalAdvance(QStringLiteral("29"));
        QVERIFY(30 / bars.categoryLabelStep() * labelWidth <= 300);
        bars.resize(2400, 400); // room for all: every layer labelled
        QCOMPARE(bars.categoryLabelStep(), 1);
    }

    void splitSpectraOfManyLayersHaveALegend()
    {
        // Issue 18: split spectra of many layers (keys solid, values dashed) had no legend at all.
        SpectrumPlot plot;
        QList<SpectrumPlot::Series> series;
        for (int l = 0; l < 12; ++l) {
            series.append({QStringLiteral("layer %1 · key").arg(l), {4.0, 2.0, 1.0}, {0.0, 0.7, 0.9, 1.0}, l / 11.0, false});
            series.append({QStringLiteral("layer %1 · value").arg(l), {3.0, 1.0, 0.5}, {0.0, 0.8, 0.95, 1.0}, l / 11.0, true});
        }
        plot.setSeries(series, QStringLiteral("singular value"));
        QCOMPARE(plot.legendEntries(), 2);
        auto* p = plot.findChild<QCustomPlot*>();
        QVERIFY(p->legend->visible());
        QCOMPARE(p->legend->itemCount(), 2);
        // Not split, many layers: the colour ramp stands for the layer, no legend; few layers: one entry each.
        QList<SpectrumPlot::Series> joint;
        for (int l = 0; l < 12; ++l)
            joint.append({QStringLiteral("layer %1").arg(l), {4.0, 2.0}, {0.0, 0.8, 1.0}, l / 11.0, false});
        plot.setSeries(joint, QStringLiteral("singular value"));
        QCOMPARE(plot.legendEntries(), 0);
        QVERIFY(!p->legend->visible());
        plot.setSeries(joint.mid(0, 3), QStringLiteral("singular value"));
        QCOMPARE(plot.legendEntries(), 3);
        // No series: a message instead of empty axes.
        plot.setSeries({}, QStringLiteral("singular value"));
        QVERIFY(!plot.emptyMessage().isEmpty());
    }

    void spectrumLegendCoversNoCurve()
    {
        // Issue 18: the legend in the top right corner of the spectra covered a flat spectrum (layer 4 of the demo on
        // some views). The value range now leaves that corner free of every curve, at any size down to the plot's
        // in a 1280x720 window.
        SpectrumPlot plot;
        plot.resize(700, 500);
        plot.show();
        QVERIFY(QTest::qWaitForWindowExposed(&plot));
        QList<SpectrumPlot::Series> series;
        constexpr int kRanks = 56;
        for (int l = 0; l < 5; ++l) {
            SpectrumPlot::Series s{QStringLiteral("layer %1").arg(l), {}, {}, l / 4.0, false};
            // Layers 0-3 fall off by four decades; layer 4 stays within one, the highest curve at the right.
            const double decades = l == 4 ? 1.0 : 4.0;
            double total = 0.0;
            for (int k = 0; k < kRanks; ++k) {
                s.singular.push_back(5.0 * std::pow(10.0, -decades * k / (kRanks - 1.0)));
                total += s.singular.back() * s.singular.back();
            }
            double kept = 0.0;
            s.retained.push_back(0.0);
            for (double v : s.singular) {
                kept += v * v;
                s.retained.push_back(kept / total);
            }
            series.append(s);
        }
        plot.setSeries(series, QStringLiteral("singular value"));
        plot.setRankLimits(1, kRanks);
        plot.setRankCursor(8, true);
        auto* p = plot.findChild<QCustomPlot*>();
        // The spectra in a 1280x720 window are about 570x520; 380x300 is smaller than the tour ever makes them.
        for (const QSize size : {QSize(700, 500), QSize(570, 520), QSize(380, 300)}) {
            resizeAndSettle(plot, p, size);
            const QString where = QStringLiteral("%1x%2").arg(size.width()).arg(size.height());
            QVERIFY(p->legend->visible());
            const QRect legend = p->legend->outerRect();
            QCPAxisRect* spectra = p->axisRect(0);
            QVERIFY2(spectra->rect().contains(legend), qPrintable(where)); // not cut off
            QCPAxis* x = spectra->axis(QCPAxis::atBottom);
            QCPAxis* y = spectra->axis(QCPAxis::atLeft);
            // Every point under the legend's width, and the one beside it on each side, lies below it.
            for (const SpectrumPlot::Series& s : std::as_const(series)) {
                for (int k = 0; k < kRanks; ++k) {
                    const double px = x->coordToPixel(k + 1.0);
                    const double beside = x->coordToPixel(k + 2.0) - px; // one rank in pixels
                    if (px < legend.left() - beside || px > legend.right() + beside)
                        continue;
                    const double py = y->coordToPixel(s.singular[static_cast<std::size_t>(k)]);
                    QVERIFY2(py > legend.bottom(), qPrintable(QStringLiteral("%1: %2 at rank %3 at y=%4, the legend down to %5")
                                                                  .arg(where, s.name)
                                                                  .arg(k + 1)
                                                                  .arg(py)
                                                                  .arg(legend.bottom())));
                }
            }
            // The spectra keep a fair part of the height.
            QVERIFY2(y->coordToPixel(series[0].singular.back()) - y->coordToPixel(series[0].singular.front()) >= 0.35 * spectra->rect().height(), qPrintable(where));
            // The range settled: measuring again after a layout asks for no further replot.
            QSignalSpy replots(p, &QCustomPlot::afterReplot);
            p->replot();
            QTest::qWait(100);
            QVERIFY2(replots.count() == 1, qPrintable(QStringLiteral("%1: %2 replots").arg(where).arg(replots.count())));
        }
    }

    void barLegendCoversNoBar()
    {
        // Issue 18: the legend sat over the tallest bars.
        BarPlot bars;
        bars.resize(500, 300);
        bars.show();
        QVERIFY(QTest::qWaitForWindowExposed(&bars));
        BarPlot::Series a{QStringLiteral("weight space"), {}}, b{QStringLiteral("activation space"), {}}, c{QStringLiteral("preset best"), {}};
        QStringList layers;
        for (int l = 0; l < 6; ++l) {
            layers << QString::number(l);
            a.values.push_back(1.0);
            b.values.push_back(0.9);
            c.values.push_back(0.95);
        }
        bars.setData(layers, {a, b, c}, QStringLiteral("layer"), QStringLiteral("error"));
        auto* p = bars.findChild<QCustomPlot*>();
        p->replot();
        QVERIFY(p->legend->visible());
        const double barTop = p->yAxis->coordToPixel(1.0); // pixels grow downwards
        QVERIFY2(p->legend->outerRect().bottom() < barTop,
                 qPrintable(QStringLiteral("legend bottom %1, bars from %2").arg(p->legend->outerRect().bottom()).arg(barTop)));
    }

    void memoryLegendIsOutsideTheCurves()
    {
        // Issue 18: the memory plot's legend sat in a corner of the axes, over the curves. It is now a key (model by
        // colour, format by line style, measured by its marker) in a band the value range leaves above the highest
        // curve, at any size down to the plot's size in a 1280x720 window.
        MemoryPlot memory;
        memory.resize(520, 320);
        memory.show();
        QVERIFY(QTest::qWaitForWindowExposed(&memory));
        // What the Preview plots after a check with float32 caches: original and MLA in BF16, int8, int4 and F32, and
        // the measured points.
        const std::vector<std::int64_t> contexts{256, 1024, 4096, 16384, 65536};
        QList<MemoryPlot::Curve> curves;
        const std::tuple<QString, Qt::PenStyle, double> formats[] = {{QStringLiteral("BF16"), Qt::SolidLine, 2.0},
                                                                     {QStringLiteral("INT8"), Qt::DashLine, 1.0},
                                                                     {QStringLiteral("INT4"), Qt::DotLine, 0.5},
                                                                     {QStringLiteral("f32"), Qt::DashDotLine, 4.0}};
        for (const auto& [name, style, bytes] : formats) {
            for (bool converted : {false, true}) {
                MemoryPlot::Curve c{(converted ? QStringLiteral("MLA · ") : QStringLiteral("original · ")) + name, {}, converted ? 0 : 1, style,
                                    converted, false, name};
                for (std::int64_t n : contexts)
                    c.bytes.push_back(static_cast<double>(n) * 512.0 * bytes * (converted ? 0.25 : 1.0));
                curves.append(c);
            }
        }
        for (const int f32 : {6, 7}) {
            MemoryPlot::Curve measured{QStringLiteral("measured · ") + curves[f32].name, curves[f32].bytes, curves[f32].colour, Qt::NoPen, curves[f32].converted};
            measured.measured = true;
            curves.append(measured);
        }
        memory.setCurves(contexts, curves);
        memory.setMarker(4096);
        QCOMPARE(memory.legendEntries(), QStringList({QStringLiteral("original"), QStringLiteral("MLA"), QStringLiteral("BF16"), QStringLiteral("INT8"),
                                                      QStringLiteral("INT4"), QStringLiteral("f32"), QStringLiteral("measured")}));
        auto* p = memory.findChild<QCustomPlot*>();
        const double highest = curves[6].bytes.back(); // the original's float32 cache at the longest context
        const double lowest = curves[5].bytes.front();
        // The Preview's memory plot in a 1280x720 window is about 289x208.
        for (const QSize size : {QSize(520, 320), QSize(289, 208), QSize(900, 260)}) {
            resizeAndSettle(memory, p, size);
            const QString where = QStringLiteral("%1x%2").arg(size.width()).arg(size.height());
            QVERIFY(p->legend->visible());
            const QRect legend = p->legend->outerRect();
            const QRect axes = p->axisRect()->rect();
            // Every curve point lies below the legend.
            const double dataTop = p->yAxis->coordToPixel(highest);
            QVERIFY2(legend.bottom() < dataTop, qPrintable(QStringLiteral("%1: legend down to %2, curves up to %3").arg(where).arg(legend.bottom()).arg(dataTop)));
            QVERIFY2(axes.contains(legend), qPrintable(where)); // not cut off
            // The data keep a fair part of the height.
            QVERIFY2(p->yAxis->coordToPixel(lowest) - dataTop >= 0.35 * axes.height(), qPrintable(where));
            // Bytes are labelled up to the first tick (a power of two) above the curves, not in the legend's band.
            const QVector<double> ticks = p->yAxis->tickVector();
            const QVector<QString> labels = p->yAxis->tickVectorLabels();
            QVERIFY(ticks.size() == labels.size() && !labels.isEmpty());
            for (int i = 0; i < ticks.size(); ++i)
                QVERIFY2(labels[i].isEmpty() == (ticks[i] > 2.0 * highest * 1.0001), qPrintable(where + QLatin1Char(' ') + labels[i]));
        }
        // Curves that do not name their format: one entry each. Nothing plotted: no legend.
        QList<MemoryPlot::Curve> unnamed{curves[0], curves[1]};
        for (MemoryPlot::Curve& c : unnamed)
            c.format.clear();
        memory.setCurves(contexts, unnamed);
        QCOMPARE(memory.legendEntries(), QStringList({curves[0].name, curves[1].name}));
        memory.setCurves({}, {});
        QVERIFY(memory.legendEntries().isEmpty());
    }
};

QTEST_MAIN(TestPlots)
#include "tst_plots.moc"
