// The settings-to-preview path: moving each settings control updates the live preview (cards, bars, memory curves,
// per-layer table) at once; slider drags are single undo steps; locked layers keep their width.

#include "common/test_support.h"
#include "document/workbench.h"
#include "models/layer_preview_model.h"
#include "panels/preview_view.h"
#include "panels/settings_panel.h"
#include "plots/bar_plot.h"
#include "plots/memory_plot.h"
#include "common/synthetic_analysis.h"
#include "view_data/view_data.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QTest>
#include <QUndoStack>

#include <cmath>

using namespace mla;

class TestSettingsPreview : public QObject {
    Q_OBJECT
    Workbench* m_wb = nullptr;
    SettingsPanel* m_settings = nullptr;
    PreviewView* m_preview = nullptr;
    QWidget* m_window = nullptr;

private Q_SLOTS:
    void init()
    {
        m_window = new QWidget;
        m_wb = new Workbench(m_window);
        m_settings = new SettingsPanel(m_wb, m_window);
        m_preview = new PreviewView(m_wb, m_window);
        m_preview->move(400, 0);
        m_preview->resize(900, 700);
        m_window->resize(1300, 800);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window));
        QVERIFY(!m_settings->isEnabled()); // nothing open yet
        m_wb->setAnalysisOnly(std::make_shared<const AnalysisResult>(test::syntheticAnalysis(test::sixLayerShape())), 5000000);
        QVERIFY(m_settings->isEnabled());
    }

    void cleanup()
    {
        delete m_window;
        m_window = nullptr;
    }

    void defaultsShowThePaperChoice()
    {
        const ModelConfig c = test::sixLayerShape();
        QCOMPARE(m_settings->pairsSpin()->value(), int(defaultRopePairs(c))); // d_h / 16
        QCOMPARE(m_settings->savingSpin()->value(), 75.0);
        QCOMPARE(m_wb->preview().kv.convertedTotal * 4, m_wb->preview().kv.originalTotal);
        QVERIFY(m_preview->summaryText().contains(QStringLiteral("\u221275.0%")));
        QCOMPARE(m_preview->layerModel()->rowCount(), int(c.layers));
        QVERIFY(m_settings->pairsNote()->text().contains(QStringLiteral("r = 2p = 4 of d_h = 32")));
    }

    void pairsSliderUpdatesPreview()
    {
        QSignalSpy previews(m_wb, &Workbench::previewChanged);
        m_settings->pairsSlider()->setValue(4);
        QCOMPARE(previews.count(), 1);
        QCOMPARE(m_wb->settings().ropePairs, 4);
        for (const LayerPreview& l : m_wb->preview().layers)
            QCOMPARE(l.ropePairs, 4);
        QCOMPARE(m_preview->layerModel()->index(0, LayerPreviewModel::PairsColumn).data().toString(), QStringLiteral("4 (8 dims)"));
        // The latent follows the 75% saving: d_c = 0.25 * 2 * n_kv * d_h - n_kv * 2p.
        QCOMPARE(m_wb->resolvedLatent(), 64 - 4 * 8);
        QVERIFY(m_settings->pairsNote()->text().contains(QStringLiteral("r = 2p = 8")));
        QVERIFY(m_wb->previewIsStale()); // the spectra were for 2 pairs; without weights they cannot be recomputed
    }

    void latentSliderUpdatesBarsAndTable()
    {
        const double before = m_wb->preview().meanWeightError;
        m_settings->latentSlider()->setValue(100);
        QCOMPARE(m_wb->resolvedLatent(), 100);
        QCOMPARE(m_settings->latentSpin()->value(), 100);
        QVERIFY(m_wb->preview().meanWeightError < before);
        QVERIFY(m_settings->latentNote()->text().contains(QStringLiteral("d_kv = d_c / n_kv = 25")));
        QCOMPARE(m_preview->layerModel()->index(3, LayerPreviewModel::LatentColumn).data(Qt::EditRole).toLongLong(), 100LL);
        const auto& series = m_preview->errorPlot()->series();
        QCOMPARE(series.size(), 2); // weight and activation space
        QCOMPARE(series[0].values.size(), std::size_t(6));
        QCOMPARE(series[0].values[2], m_wb->preview().layers[2].weightError);
        // Saving moved with it, shown to the spin box's precision (here 54.6875% reads 54.7%); showing it must not
        // turn the hand-set latent back into a target saving.
        const double shownStep = std::pow(10.0, -m_settings->savingSpin()->decimals());
        QVERIFY2(std::abs(m_settings->savingSpin()->value() - 100.0 * m_wb->preview().kv.saving()) <= 0.5 * shownStep + 1e-9,
                 qPrintable(QStringLiteral("%1 vs %2").arg(m_settings->savingSpin()->value()).arg(100.0 * m_wb->preview().kv.saving())));
        QCOMPARE(m_wb->settings().latentDim, 100);
        // Memory curves: original and MLA in BF16, int8, int4; the MLA ones lower.
        const auto& curves = m_preview->memoryPlot()->curves();
        QCOMPARE(curves.size(), 6);
        QVERIFY(curves[1].bytes.back() < curves[0].bytes.back());
        QVERIFY(curves[5].bytes.back() < curves[1].bytes.back());
    }

    void savingSetsTheLatent()
    {
        m_settings->savingSpin()->setValue(87.5);
        QCOMPARE(m_wb->settings().latentDim, -1);
        QCOMPARE(m_wb->settings().targetSaving, 0.875);
        QCOMPARE(m_wb->preview().kv.saving(), 0.875);
        QCOMPARE(m_settings->latentSpin()->value(), int(m_wb->resolvedLatent()));
        // An unreachable saving is a problem shown, not a crash.
        m_settings->pairsSlider()->setValue(16);
        QVERIFY(!m_wb->preview().problem.empty());
        QVERIFY(m_preview->summaryText().contains(QStringLiteral("\u2014")));
        m_settings->pairsSlider()->setValue(2);
        QVERIFY(m_wb->preview().problem.empty());
    }

    void everyStrategyAndMethod()
    {
        for (int i = 0; i < m_settings->strategyCombo()->count(); ++i) {
            m_settings->strategyCombo()->setCurrentIndex(i);
            QCOMPARE(int(m_wb->settings().strategy), m_settings->strategyCombo()->itemData(i).toInt());
            QVERIFY2(m_wb->preview().problem.empty(), m_wb->preview().problem.c_str());
            QCOMPARE(m_wb->selections().size(), std::size_t(6));
        }
        QVERIFY(m_settings->uniformStartSpin()->isEnabled() == (m_wb->settings().strategy == RopeStrategy::Uniform));
        for (int i = 0; i < m_settings->methodCombo()->count(); ++i) {
            m_settings->methodCombo()->setCurrentIndex(i);
            const auto method = static_cast<LatentMethod>(m_settings->methodCombo()->itemData(i).toInt());
            QCOMPARE(m_wb->settings().method, method);
            QCOMPARE(m_settings->latentSlider()->isEnabled(), method != LatentMethod::None);
            const LatentRange r = latentRange(test::sixLayerShape(), m_wb->resolvedRopePairs(), method);
            QCOMPARE(m_settings->latentSlider()->maximum(), int(r.maximum));
        }
        m_settings->sigmaCombo()->setCurrentIndex(1);
        QCOMPARE(m_wb->settings().sigma, SigmaPlacement::Sqrt);
        m_settings->activationCheck()->setChecked(true);
        QVERIFY(m_wb->settings().activationAware);
    }

    void presetAppliesCoreRecipe()
    {
        m_settings->presetCombo()->setCurrentIndex(m_settings->presetCombo()->findData(QStringLiteral("best")));
        Q_EMIT m_settings->presetCombo()->activated(m_settings->presetCombo()->currentIndex());
        QCOMPARE(m_wb->settings().preset, std::string("best"));
        QVERIFY(m_wb->settings().activationAware && m_wb->settings().refit && m_wb->settings().allocate);
        QVERIFY(m_settings->refitCheck()->isChecked());
        // Touching a control afterwards makes the settings custom.
        m_settings->sigmaCombo()->setCurrentIndex(1);
        QCOMPARE(m_wb->settings().preset, std::string());
        QCOMPARE(m_settings->presetCombo()->currentIndex(), 0);
        // Side-by-side comparison with a preset.
        m_preview->compareCombo()->setCurrentIndex(m_preview->compareCombo()->findData(QStringLiteral("paper")));
        QCOMPARE(m_preview->errorPlot()->series().size(), 3);
    }

    void sliderDragIsOneUndoStep()
    {
        QUndoStack* undo = m_wb->undoStack();
        const int start = undo->count();
        const std::int64_t original = m_wb->resolvedLatent();
        for (int v = 20; v <= 60; v += 5)
            m_settings->latentSlider()->setValue(v);
        QCOMPARE(undo->count(), start + 1);
        QCOMPARE(m_wb->resolvedLatent(), 60);
        undo->undo();
        QCOMPARE(m_wb->resolvedLatent(), original);
        QCOMPARE(m_settings->latentSpin()->value(), int(original));
        undo->redo();
        QCOMPARE(m_wb->resolvedLatent(), 60);
        // A different control is a new step.
        m_settings->pairsSlider()->setValue(3);
        QCOMPARE(undo->count(), start + 2);
        undo->undo();
        QCOMPARE(m_wb->resolvedRopePairs(), 2);
        QCOMPARE(m_settings->pairsSpin()->value(), 2);
    }

    void lockedLayerKeepsItsWidth_data()
    {
        QTest::addColumn<bool>("allocate");
        QTest::newRow("uniform layers") << false;
        QTest::newRow("per-layer allocation on") << true; // the per-layer list is the allocation's, not recomputed
    }

    void lockedLayerKeepsItsWidth()
    {
        QFETCH(bool, allocate);
        if (allocate) {
            m_settings->allocateCheck()->setChecked(true);
            QVERIFY(m_wb->settings().allocate);
        }
        m_settings->latentSpin()->setValue(40);
        LayerPreviewModel* model = m_preview->layerModel();
        QVERIFY(model->setData(model->index(2, LayerPreviewModel::LatentColumn), 10));
        QVERIFY(m_wb->lockedLayers()[2]);
        QCOMPARE(m_wb->preview().layers[2].latentK, 10);
        QCOMPARE(model->index(2, LayerPreviewModel::LockColumn).data(Qt::CheckStateRole).toInt(), int(Qt::Checked));
        QVERIFY(m_settings->latentNote()->text().contains(QStringLiteral("1 layer(s) locked")));
        m_settings->latentSpin()->setValue(50);
        QCOMPARE(m_wb->preview().layers[2].latentK, 10);
        QCOMPARE(m_wb->preview().layers[0].latentK, 50);
        m_settings->savingSpin()->setValue(80.0);
        QCOMPARE(m_wb->preview().layers[2].latentK, 10);
        QVERIFY(model->setData(model->index(2, LayerPreviewModel::LockColumn), Qt::Unchecked, Qt::CheckStateRole));
        QVERIFY(!m_wb->lockedLayers()[2]);
        QCOMPARE(m_wb->preview().layers[2].latentK, m_wb->preview().layers[0].latentK);
        if (!allocate)
            QVERIFY(m_wb->settings().latentPerLayer.empty());
    }

    void calibrationControls()
    {
        m_settings->calibrationSourceCombo()->setCurrentIndex(2);
        QCOMPARE(m_wb->calibration().source, CalibrationOptions::Source::Ids);
        QVERIFY(m_settings->calibrationFileEdit()->isEnabled());
        QVERIFY(!m_settings->samplesSpin()->isEnabled());
        m_settings->calibrationSourceCombo()->setCurrentIndex(0);
        m_settings->samplesSpin()->setValue(32);
        Q_EMIT m_settings->samplesSpin()->editingFinished();
        QCOMPARE(m_wb->calibration().samples, 32);
    }

    // The DeepSeek-V3 target through the panel's Target combo: one kv_lora_rank and one shared RoPE head for every layer.
    // sixLayerShape caches 2 x 4 KV heads x 32 = 256 values per layer; 75% saving leaves 64: the default shared head
    // takes the mha2mla default's pairs of every KV head (4 x 2 pairs = 16 dims), the latent the other 48.
    void deepSeekTargetShowsItsWidths()
    {
        const ModelConfig c = test::sixLayerShape();
        QVERIFY(!m_settings->flashMlaCheck()->isEnabled());
        QVERIFY(m_settings->targetCombo()->toolTip().contains(QStringLiteral("vLLM")));
        QSignalSpy previews(m_wb, &Workbench::previewChanged);
        m_settings->targetCombo()->setCurrentIndex(m_settings->targetCombo()->findData(static_cast<int>(ConversionTarget::DeepSeekV3)));
        QVERIFY(m_wb->deepSeekTarget());
        QVERIFY(!previews.isEmpty());
        QVERIFY(m_settings->flashMlaCheck()->isEnabled());
        QVERIFY(m_wb->preview().problem.empty());
        QVERIFY(m_wb->deepSeekWidths());
        QCOMPARE(m_wb->deepSeekWidths()->ropeDim, 16);
        QCOMPARE(m_wb->deepSeekWidths()->kvLoraRank, 48);
        QCOMPARE(m_wb->resolvedLatent(), 48);
        QCOMPARE(m_wb->resolvedRopePairs(), 8);
        QCOMPARE(m_wb->preview().kv.convertedTotal, 64 * c.layers);
        QCOMPARE(m_wb->preview().kv.originalTotal, 256 * c.layers);
        // Bytes per token from the buffers the engine allocates (the Cache memory card read "0 B -> 0 B"): in BF16 two
        // bytes per cached value, before and after.
        QCOMPARE(m_wb->preview().kv.originalBytesPerToken(CacheFormat::BF16), 2.0 * 256 * double(c.layers));
        QCOMPARE(m_wb->preview().kv.convertedBytesPerToken(CacheFormat::BF16), 2.0 * 64 * double(c.layers));
        QCOMPARE(m_settings->latentSpin()->value(), 48);
        QCOMPARE(m_settings->pairsSpin()->value(), 8);
        QCOMPARE(m_settings->pairsSpin()->maximum(), int(c.kvHeads * c.pairsPerHead())); // the shared head may take them all
        QVERIFY(m_settings->latentNote()->text().contains(QStringLiteral("kv_lora_rank = 48")));
        QVERIFY(m_preview->layoutText().contains(QStringLiteral("kv_lora_rank <b>48</b>")));
        QCOMPARE(m_preview->layerModel()->rowCount(), int(c.layers));
        QVERIFY(!(m_preview->layerModel()->flags(m_preview->layerModel()->index(0, LayerPreviewModel::LatentColumn)) & Qt::ItemIsEditable));
        QVERIFY(m_preview->summaryText().contains(QStringLiteral("measured by the conversion")));

        // More pairs than one KV head has: the latent gives way within the same budget.
        m_settings->pairsSpin()->setValue(20);
        QCOMPARE(m_wb->resolvedRopePairs(), 20);
        QCOMPARE(m_wb->resolvedLatent(), 64 - 40);
        QVERIFY(m_wb->preview().problem.empty());
        // One width for every layer: a per-layer edit or lock changes nothing, and Allocate now is refused with the reason.
        m_wb->setLayerLatent(0, 10);
        m_wb->setLayerLocked(1, true);
        QVERIFY(m_wb->settings().latentPerLayer.empty());
        QVERIFY(!m_wb->lockedLayers().at(1));
        QSignalSpy errors(m_wb, &Workbench::errorOccurred);
        m_wb->allocate();
        QCOMPARE(errors.size(), 1);
        QVERIFY(!m_settings->allocateButton()->isEnabled());

        // FlashMLA's 512 + 64 does not fit a model caching 256 values per layer: the preview says so.
        m_settings->flashMlaCheck()->setChecked(true);
        QVERIFY(m_wb->settings().flashMla);
        QCOMPARE(m_wb->settings().ropePairs, -1); // FlashMLA fixes the widths
        QVERIFY(QString::fromStdString(m_wb->preview().problem).contains(QStringLiteral("too small")));
        QVERIFY(m_preview->layerModel()->rowCount() == 0);
        QVERIFY(!m_settings->pairsSpin()->isEnabled());

        // Undo walks back through FlashMLA, the pairs and the target; back on mha2mla the pairs are per KV head again.
        m_wb->undoStack()->undo();
        QVERIFY(!m_wb->settings().flashMla);
        QCOMPARE(m_wb->resolvedRopePairs(), 20);
        m_wb->undoStack()->undo();
        QCOMPARE(m_wb->resolvedRopePairs(), 8);
        m_wb->undoStack()->undo();
        QVERIFY(!m_wb->deepSeekTarget());
        QVERIFY(!m_wb->deepSeekWidths());
        QCOMPARE(m_wb->resolvedRopePairs(), defaultRopePairs(c));
        QVERIFY(!m_settings->flashMlaCheck()->isEnabled());
        QVERIFY(m_preview->layoutText().isEmpty());
        m_wb->undoStack()->redo();
        m_settings->pairsSpin()->setValue(20);
        m_settings->targetCombo()->setCurrentIndex(m_settings->targetCombo()->findData(static_cast<int>(ConversionTarget::Mha2mla)));
        QCOMPARE(m_wb->settings().ropePairs, -1); // 20 shared pairs mean nothing per KV head: back to the default
        QVERIFY(m_wb->preview().problem.empty());
        QVERIFY(m_wb->healUnavailableReason().isEmpty()); // nothing converted
    }

    void decompositionControlsKeepThePreset()
    {
        m_settings->presetCombo()->setCurrentIndex(m_settings->presetCombo()->findData(QStringLiteral("paper")));
        Q_EMIT m_settings->presetCombo()->activated(m_settings->presetCombo()->currentIndex());
        QCOMPARE(m_wb->settings().preset, std::string("paper"));
        QVERIFY(!m_settings->powerIterationsSpin()->isEnabled()); // exact: nothing to iterate
        QUndoStack* undo = m_wb->undoStack();
        const int start = undo->count();
        m_settings->decompositionCombo()->setCurrentIndex(
            m_settings->decompositionCombo()->findData(static_cast<int>(DecompositionMethod::Randomized)));
        QVERIFY(m_wb->settings().decomposition == DecompositionMethod::Randomized);
        QVERIFY(m_settings->powerIterationsSpin()->isEnabled());
        for (int q = 2; q <= 4; ++q)
            m_settings->powerIterationsSpin()->setValue(q);
        QCOMPARE(m_wb->settings().powerIterations, std::int64_t{4});
        QCOMPARE(undo->count(), start + 2); // the method, then the spin's steps as one
        // How the factors are computed is not part of a preset's recipe: the preset stays named.
        QCOMPARE(m_wb->settings().preset, std::string("paper"));
        undo->undo();
        undo->undo();
        QVERIFY(m_wb->settings().decomposition == DecompositionMethod::Exact);
        QCOMPARE(m_settings->decompositionCombo()->currentData().toInt(), static_cast<int>(DecompositionMethod::Exact));
        // The DeepSeek-V3 target decomposes exactly: switching to it drops a randomized choice (whose control it
        // disables) instead of leaving a setting the conversion refuses and the user cannot reach.
        m_settings->decompositionCombo()->setCurrentIndex(
            m_settings->decompositionCombo()->findData(static_cast<int>(DecompositionMethod::Randomized)));
        m_settings->targetCombo()->setCurrentIndex(m_settings->targetCombo()->findData(static_cast<int>(ConversionTarget::DeepSeekV3)));
        QVERIFY(m_wb->settings().decomposition == DecompositionMethod::Exact);
        QVERIFY(!m_settings->decompositionCombo()->isEnabled());
        QVERIFY2(m_wb->preview().problem.empty(), m_wb->preview().problem.c_str());
        m_settings->targetCombo()->setCurrentIndex(m_settings->targetCombo()->findData(static_cast<int>(ConversionTarget::Mha2mla)));
        QVERIFY(m_settings->decompositionCombo()->isEnabled());
    }

    void everyControlHasAFormulaTooltip()
    {
        for (QWidget* w : QList<QWidget*>{m_settings->strategyCombo(), m_settings->pairsSlider(), m_settings->methodCombo(),
                                          m_settings->latentSlider(), m_settings->savingSpin(), m_settings->sigmaCombo(),
                                          m_settings->activationCheck(), m_settings->balanceCheck(), m_settings->refitCheck(),
                                          m_settings->allocateCheck(), m_settings->calibrationSourceCombo(), m_settings->presetCombo(),
                                          m_settings->uniformStartSpin(), m_settings->targetCombo(), m_settings->flashMlaCheck(),
                                          m_settings->decompositionCombo(), m_settings->powerIterationsSpin()})
            QVERIFY2(w->toolTip().size() > 30, w->metaObject()->className());
        QVERIFY(m_settings->savingSpin()->toolTip().contains(QStringLiteral("2·n<sub>kv</sub>·d<sub>h</sub>")));
        QVERIFY(m_settings->latentSlider()->toolTip().contains(QStringLiteral("s<sub>i</sub>²")));
    }
};

QTEST_MAIN(TestSettingsPreview)
#include "tst_settings_preview.moc"
