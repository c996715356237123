// Each panel on the real demo model, analysed once through the workbench's own jobs: the model panel, the RoPE
// heatmap view, the spectrum view with its rank cursor, the preview, the sanity check after a conversion, the
// "How it works" panel and the run bar.

#include "common/test_support.h"
#include "document/workbench.h"
#include "models/generation_model.h"
#include "models/layer_preview_model.h"
#include "models/model_info_model.h"
#include "models/sanity_metrics_model.h"
#include "palette_colours.h"
#include "panels/explainer_panel.h"
#include "panels/model_panel.h"
#include "panels/preview_view.h"
#include "panels/rope_view.h"
#include "panels/run_bar.h"
#include "panels/sanity_view.h"
#include "panels/spectrum_view.h"
#include "plots/heatmap_plot.h"
#include "plots/memory_plot.h"
#include "plots/spectrum_plot.h"
#include "view_data/view_data.h"

#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTabWidget>
#include <QTest>
#include <QUndoStack>

using namespace mla;

namespace {
constexpr int kTimeout = 300000;
}

class TestPanels : public QObject {
    Q_OBJECT
    QTabWidget* m_tabs = nullptr;
    Workbench* m_wb = nullptr;
    ModelPanel* m_model = nullptr;
    RopeView* m_rope = nullptr;
    SpectrumView* m_spectrum = nullptr;
    PreviewView* m_preview = nullptr;
    SanityView* m_sanity = nullptr;
    ExplainerPanel* m_explainer = nullptr;
    RunBar* m_run = nullptr;

    void cacheFormatCheck(); // part of sanityAfterConversion

private Q_SLOTS:
    void initTestCase()
    {
        m_tabs = new QTabWidget;
        m_wb = new Workbench(m_tabs);
        m_model = new ModelPanel(m_wb);
        m_rope = new RopeView(m_wb);
        m_spectrum = new SpectrumView(m_wb);
        m_preview = new PreviewView(m_wb);
        m_sanity = new SanityView(m_wb);
        m_explainer = new ExplainerPanel(m_wb);
        m_run = new RunBar(m_wb);
        for (QWidget* w : QList<QWidget*>{m_model, m_rope, m_spectrum, m_preview, m_sanity, m_explainer, m_run})
            m_tabs->addTab(w, QString::fromLatin1(w->metaObject()->className()));
        m_tabs->resize(1200, 800);
        m_tabs->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_tabs));
        QVERIFY(!m_run->analyzeButton()->isEnabled());

        QSignalSpy opened(m_wb, &Workbench::modelChanged);
        m_wb->openModel(QString::fromStdString((test::demoDir() / "stories260K.bin").string()));
        QVERIFY(opened.wait(kTimeout));
        QVERIFY(m_wb->hasModel());
        CalibrationOptions calibration = m_wb->calibration();
        calibration.samples = 4;
        calibration.sequenceLength = 64;
        m_wb->changeCalibration(calibration, QStringLiteral("quick"));
        QSignalSpy analysed(m_wb, &Workbench::analysisChanged);
        QSignalSpy started(m_wb, &Workbench::jobStarted);
        QVERIFY(m_run->analyzeButton()->isEnabled());
        QTest::mouseClick(m_run->analyzeButton(), Qt::LeftButton);
        QCOMPARE(started.count(), 1);
        QVERIFY(!m_run->analyzeButton()->isEnabled()); // busy
        QVERIFY(m_run->cancelButton()->isEnabled());
        QVERIFY(analysed.wait(kTimeout));
        QVERIFY(m_wb->analysis());
        QTRY_VERIFY(!m_wb->isBusy());
    }

    void cleanupTestCase() { delete m_tabs; }

    void runBarShowsTheFinishedJob()
    {
        QCOMPARE(m_run->progressBar()->value(), m_run->progressBar()->maximum());
        QVERIFY(m_run->stageText().contains(QStringLiteral("done")));
        QVERIFY(m_run->etaText().startsWith(QStringLiteral("took")));
        QVERIFY(!m_run->cancelButton()->isEnabled());
        QVERIFY(m_run->deviceCombo()->count() >= 1);
        QCOMPARE(m_run->deviceCombo()->itemData(0).toString(), QStringLiteral("cpu"));
    }

    void modelPanel()
    {
        m_tabs->setCurrentWidget(m_model);
        const ModelConfig& c = *m_wb->config();
        ModelInfoModel* info = m_model->infoModel();
        QCOMPARE(info->index(0, 1).data().toString(), QStringLiteral("stories260K.bin"));
        m_model->contextSpin()->setValue(2048);
        m_model->batchSpin()->setValue(8);
        QCOMPARE(m_wb->contextLength(), 2048);
        QCOMPARE(m_wb->batchSize(), 8);
        const QModelIndex cache = info->index(info->rowCount() - 1, 1);
        QCOMPARE(cache.data(ModelInfoModel::RawValueRole).toDouble(), 2.0 * c.kvElementsPerToken() * 2048 * 8);
        m_model->formatCombo()->setCurrentIndex(m_model->formatCombo()->findData(int(CacheFormat::Int8)));
        QCOMPARE(m_wb->cacheFormat(), CacheFormat::Int8);
        QCOMPARE(info->index(info->rowCount() - 1, 1).data(ModelInfoModel::RawValueRole).toDouble(),
                 cacheBytesPerToken(c, CacheFormat::Int8) * 2048 * 8);
        m_model->formatCombo()->setCurrentIndex(0);
    }

    void ropeView()
    {
        m_tabs->setCurrentWidget(m_rope);
        const ModelConfig& c = *m_wb->config();
        const view::ScoreGrid& g = m_rope->heatmap()->grid();
        QCOMPARE(g.rows, c.layers);
        QCOMPARE(g.columns, c.kvHeads * c.pairsPerHead()); // all heads at once by default
        QCOMPARE(std::count(g.kept.begin(), g.kept.end(), std::uint8_t{1}), c.layers * c.kvHeads * m_wb->resolvedRopePairs());
        m_rope->headCombo()->setCurrentIndex(2); // KV head 1
        QCOMPARE(m_rope->heatmap()->grid().firstHead, 1);
        QCOMPARE(m_rope->heatmap()->grid().value(3, 2), m_wb->analysis()->layers[3].scores.perKvHead(1, 2));
        m_rope->measureCombo()->setCurrentIndex(1); // rotation loss
        QCOMPARE(m_rope->heatmap()->grid().value(3, 2), m_wb->analysis()->layers[3].scores.rotationLoss(1, 2));
        m_rope->logCheck()->setChecked(true);
        QVERIFY(m_rope->heatmap()->logScale());

        // Moving the pairs re-outlines the cells at once.
        ConversionSettings s = m_wb->settings();
        s.ropePairs = 3;
        m_wb->changeSettings(s, QStringLiteral("pairs"));
        QCOMPARE(std::count(m_rope->heatmap()->grid().kept.begin(), m_rope->heatmap()->grid().kept.end(), std::uint8_t{1}), c.layers * 3);
        m_wb->undoStack()->undo();
        m_rope->headCombo()->setCurrentIndex(0);
        m_rope->measureCombo()->setCurrentIndex(0);
        m_rope->logCheck()->setChecked(false);
    }

    void spectrumViewCursorSetsTheLatent()
    {
        m_tabs->setCurrentWidget(m_spectrum);
        const ModelConfig& c = *m_wb->config();
        QCOMPARE(m_spectrum->plot()->seriesCount(), int(c.layers));
        QVERIFY(m_spectrum->plot()->rankCursorVisible());
        QCOMPARE(m_spectrum->plot()->rankCursor(), m_wb->resolvedLatent());
        m_spectrum->plot()->dragCursorTo(5);
        QCOMPARE(m_wb->resolvedLatent(), 5);
        QCOMPARE(m_wb->preview().layers[0].latentK, 5);

        // Split: key and value spectra, the cursor at half the latent.
        ConversionSettings s = m_wb->settings();
        s.method = LatentMethod::Split;
        m_wb->changeSettings(s, QStringLiteral("split"));
        m_spectrum->setKind(SpectrumView::Split);
        QCOMPARE(m_spectrum->plot()->seriesCount(), int(2 * c.layers));
        QCOMPARE(m_spectrum->plot()->rankCursor(), m_wb->resolvedLatent() / 2);
        m_spectrum->plot()->dragCursorTo(4);
        QCOMPARE(m_wb->resolvedLatent(), 8);
        // Joint spectrum with the split method: no cursor.
        m_spectrum->setKind(SpectrumView::Joint);
        QVERIFY(!m_spectrum->plot()->rankCursorVisible());

        // One layer picked: dragging sets (and locks) that layer alone.
        s = m_wb->settings();
        s.method = LatentMethod::Joint;
        m_wb->changeSettings(s, QStringLiteral("joint"));
        m_spectrum->layerCombo()->setCurrentIndex(3); // layer 2
        m_spectrum->plot()->dragCursorTo(7);
        QVERIFY(m_wb->lockedLayers()[2]);
        QCOMPARE(m_wb->preview().layers[2].latentK, 7);
        QVERIFY(m_wb->preview().layers[0].latentK != 7);
        m_wb->setLayerLocked(2, false);
        m_spectrum->layerCombo()->setCurrentIndex(0);
        // Activation spectra are offered: the analysis computed them.
        m_spectrum->sourceCombo()->setCurrentIndex(1);
        QCOMPARE(m_spectrum->sourceCombo()->currentIndex(), 1);
        m_spectrum->sourceCombo()->setCurrentIndex(0);
    }

    void previewUsesTheAnalysis()
    {
        m_tabs->setCurrentWidget(m_preview);
        QVERIFY(m_wb->previewHasErrors());
        QVERIFY(m_preview->summaryText().contains(QStringLiteral("weights")));
        QCOMPARE(m_preview->layerModel()->rowCount(), int(m_wb->config()->layers));
    }

    void explainerFollowsTheSettings()
    {
        const auto v = m_explainer->values();
        QCOMPARE(v.value(QStringLiteral("d_h")), QString::number(m_wb->config()->headDim));
        QCOMPARE(v.value(QStringLiteral("d_c")), QString::number(m_wb->resolvedLatent()));
        QCOMPARE(v.value(QStringLiteral("model")), QStringLiteral("stories260K.bin"));
        QVERIFY(m_explainer->html().contains(QStringLiteral("Partial RoPE")));
        QVERIFY(!m_explainer->html().contains(QStringLiteral("%{")));
        ConversionSettings s = m_wb->settings();
        s.latentDim = 11;
        m_wb->changeSettings(s, QStringLiteral("latent"));
        QCOMPARE(m_explainer->values().value(QStringLiteral("d_c")), QStringLiteral("11"));
        QCOMPARE(m_explainer->values().value(QStringLiteral("kv_after")), QString::number(11 + m_wb->config()->kvHeads * 2 * m_wb->resolvedRopePairs()));
        // The numbers are replaced in place on the page: it reads exactly as a page built afresh for these settings.
        const QString kvAfter = m_explainer->values().value(QStringLiteral("kv_after"));
        QVERIFY2(m_explainer->text().contains(QStringLiteral(" = 11 + ")), qPrintable(m_explainer->text()));
        QVERIFY(m_explainer->text().contains(QStringLiteral(" = ") + kvAfter));
        ExplainerPanel fresh(m_wb);
        QCOMPARE(m_explainer->text(), fresh.text());
    }

    void sanityAfterConversion()
    {
        m_tabs->setCurrentWidget(m_sanity);
        QVERIFY(!m_sanity->runButton()->isEnabled());
        m_sanity->promptEdit()->setText(QStringLiteral("Once upon a time"));
        QSignalSpy checked(m_wb, &Workbench::sanityChanged);
        QSignalSpy converted(m_wb, &Workbench::conversionChanged);
        m_wb->convert();
        QVERIFY(converted.wait(kTimeout));
        QTRY_VERIFY_WITH_TIMEOUT(m_wb->sanity().has_value() && !m_wb->isBusy(), kTimeout);
        const SanityReport& r = *m_wb->sanity();
        QVERIFY(r.convertedKvBytesPerToken < r.originalKvBytesPerToken);
        QCOMPARE(m_sanity->metricsModel()->rowCount(), 6);
        QCOMPARE(m_sanity->generationModel()->prompt(), QStringLiteral("Once upon a time"));
        QVERIFY(m_sanity->generationModel()->rowCount() > 0);
        QVERIFY(m_sanity->originalHtml().contains(QStringLiteral("Once upon a time")));
        if (r.generations[0].firstDifference >= 0)
            QVERIFY(m_sanity->convertedHtml().contains(differenceBackground(m_sanity->palette()).name())); // the mark of what differs
        QVERIFY(m_sanity->runButton()->isEnabled());
        QVERIFY(m_wb->conversionMatchesSettings());
        cacheFormatCheck();
        ConversionSettings s = m_wb->settings();
        s.latentDim = 12;
        m_wb->changeSettings(s, QStringLiteral("latent"));
        QVERIFY(!m_wb->conversionMatchesSettings());
    }
};

void TestPanels::cacheFormatCheck()
{
    // The check with an int4 latent cache, int8 RoPE keys (the default under int4) and groups of 32, as the CLI's
    // convert --check --kv-cache int4 --kv-cache-group 32 would run it.
    m_sanity->cacheCombo()->setCurrentIndex(m_sanity->cacheCombo()->findData(QStringLiteral("int4")));
    m_sanity->cacheGroupSpin()->setValue(32);
    QVERIFY(m_sanity->cacheGroupSpin()->isEnabled());
    QCOMPARE(kvCacheFormatName(m_wb->sanityOptions().cacheFormat), std::string("int4/32+rope:int8/32"));
    QVERIFY(m_sanity->statusText().contains(QStringLiteral("Run check to measure int4/32+rope:int8/32")));
    QSignalSpy checked(m_wb, &Workbench::sanityChanged);
    QTest::mouseClick(m_sanity->runButton(), Qt::LeftButton);
    QVERIFY(checked.wait(kTimeout));
    QTRY_VERIFY(!m_wb->isBusy());
    const SanityReport& r = *m_wb->sanity();
    QCOMPARE(r.withCache.format, std::string("int4/32+rope:int8/32"));
    QVERIFY(r.withCache.kvBytesPerToken > 0 && r.withCache.kvBytesPerToken < r.convertedKvBytesPerToken);
    QVERIFY(r.withCache.kl > 0.0); // 16 levels are not lossless
    QVERIFY(r.withCache.top1Agreement > 0.0 && r.withCache.top1Agreement <= 1.0);
    QVERIFY(r.combinedSaving() > 1.0 - r.convertedKvBytesPerToken / r.originalBf16KvBytesPerToken);
    QCOMPARE(m_sanity->metricsModel()->cacheFormat(), QStringLiteral("int4/32+rope:int8/32"));
    QCOMPARE(m_sanity->metricsModel()->index(0, SanityMetricsModel::CacheColumn).data().toString().left(5),
             QString::number(r.withCache.ppl, 'f', 3).left(5));
    QVERIFY(!m_sanity->statusText().contains(QStringLiteral("Run check to measure")));

    // The memory plot: one measured series per cache the check allocated, each on the formula curve of its format
    // (allocation = accounting), and the formula curve of the chosen format added since it is not one of the usual.
    const QList<MemoryPlot::Curve>& curves = m_preview->memoryPlot()->curves();
    auto find = [&curves](const QString& name) {
        for (const MemoryPlot::Curve& c : curves)
            if (c.name == name)
                return &c;
        return static_cast<const MemoryPlot::Curve*>(nullptr);
    };
    int measured = 0;
    for (const MemoryPlot::Curve& c : curves) {
        if (!c.measured)
            continue;
        ++measured;
        QString formula = c.name.mid(QStringLiteral("measured · ").size());
        const MemoryPlot::Curve* f = find(formula);
        if (!f) // the usual formats' curves are named by type alone
            f = find(formula.replace(QStringLiteral("bf16"), QStringLiteral("BF16")));
        QVERIFY2(f, qPrintable(c.name));
        QCOMPARE(c.bytes.size(), f->bytes.size());
        for (std::size_t i = 0; i < c.bytes.size(); ++i)
            QCOMPARE(c.bytes[i], f->bytes[i]);
    }
    QCOMPARE(measured, 4); // original f32 and BF16, converted f32 and int4/32+rope:int8/32
    QVERIFY(find(QStringLiteral("measured · MLA · int4/32+rope:int8/32")));
    QVERIFY(find(QStringLiteral("MLA · int4/32+rope:int8/32")));
    const std::vector<std::int64_t> contexts = view::contextGrid(*m_wb->config(), m_wb->contextLength());
    QCOMPARE(find(QStringLiteral("measured · MLA · int4/32+rope:int8/32"))->bytes.front(),
             r.withCache.kvBytesPerToken * static_cast<double>(contexts.front()) * static_cast<double>(m_wb->batchSize()));
}

QTEST_MAIN(TestPanels)
#include "tst_panels.moc"
