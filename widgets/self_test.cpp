#include "self_test.h"

#include "panels/recovery_dialog.h"

#include "document/workbench.h"
#include "main_window.h"
#include "models/layer_preview_model.h"
#include "models/model_info_model.h"
#include "models/sanity_metrics_model.h"
#include "panels/explainer_panel.h"
#include "panels/heal_view.h"
#include "panels/model_panel.h"
#include "panels/preview_view.h"
#include "panels/recovery_dialog.h"
#include "panels/rope_view.h"
#include "panels/run_bar.h"
#include "panels/sanity_view.h"
#include "panels/settings_panel.h"
#include "panels/spectrum_view.h"
#include "plots/bar_plot.h"
#include "plots/heatmap_plot.h"
#include "plots/memory_plot.h"
#include "plots/plot_widget.h"
#include "plots/spectrum_plot.h"
#include "screenshot_file.h"
#include "view_data/view_data.h"

#include <QApplication>
#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDoubleSpinBox>
#include <QElapsedTimer>
#include <QEvent>
#include <QEventLoop>
#include <QFile>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QSet>
#include <QSlider>
#include <QSpinBox>
#include <QPushButton>
#include <QTableWidget>
#include <QTabWidget>
#include <QTextStream>
#include <QTimer>
#include <QUndoStack>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mla {

void SelfTest::say(const QString& line)
{
    std::fprintf(stdout, "%s\n", line.toLocal8Bit().constData());
    std::fflush(stdout);
}

SelfTest::SelfTest(MainWindow* window, QString scratchDir) : m_window(window), m_dir(std::move(scratchDir)) {}

bool SelfTest::waitUntil(const std::function<bool()>& done, int timeoutMs)
{
    QElapsedTimer timer;
    timer.start();
    while (!done()) {
        if (timer.elapsed() > timeoutMs)
            return false;
        QEventLoop loop;
        QTimer::singleShot(5, &loop, &QEventLoop::quit);
        loop.exec();
    }
    return true;
}

void SelfTest::check(bool condition, const QString& what)
{
    if (!condition)
        m_stepFailures << what;
}

void SelfTest::step(const QString& name, const std::function<void()>& body)
{
    ++m_steps;
    m_stepFailures.clear();
    QElapsedTimer timer;
    timer.start();
    try {
        body();
    } catch (const std::exception& e) {
        m_stepFailures << QStringLiteral("exception: %1").arg(QString::fromUtf8(e.what()));
    }
    QCoreApplication::processEvents();
    if (m_stepFailures.isEmpty()) {
        say(QStringLiteral("  ok    %1 (%2 ms)").arg(name).arg(timer.elapsed()));
    } else {
        say(QStringLiteral("  FAIL  %1").arg(name));
        for (const QString& f : std::as_const(m_stepFailures)) {
            say(QStringLiteral("        - %1").arg(f));
            m_failures << name + QStringLiteral(": ") + f;
        }
    }
}

int SelfTest::run()
{
    say(QStringLiteral("mla-workbench self-test (scratch: %1)").arg(m_dir));
    step(QStringLiteral("open the demo model"), [this] { openDemo(); });
    if (!m_window->workbench()->hasModel()) {
        say(QStringLiteral("self-test: FAILED (the demo model did not open)"));
        return 1;
    }
    step(QStringLiteral("reject a broken checkpoint with core's message"), [this] { rejectBrokenCheckpoint(); });
    step(QStringLiteral("cancel an analysis"), [this] { cancelAnalysis(); });
    step(QStringLiteral("analyze"), [this] { analyze(); });
    step(QStringLiteral("move every settings control"), [this] { moveControls(); });
    step(QStringLiteral("undo and redo"), [this] { undoRedo(); });
    step(QStringLiteral("RoPE contribution view"), [this] { ropeView(); });
    step(QStringLiteral("spectrum view and rank cursor"), [this] { spectrumView(); });
    step(QStringLiteral("preview, per-layer lock"), [this] { previewView(); });
    step(QStringLiteral("How it works panel"), [this] { explainer(); });
    step(QStringLiteral("convert and sanity check"), [this] { convertAndCheck(); });
    step(QStringLiteral("heal: stop keeping layers, stop discarding, a tiny heal checked against the unhealed model"), [this] { heal(); });
    step(QStringLiteral("export every plot as PNG, PDF, SVG and CSV"), [this] { exportPlots(); });
    step(QStringLiteral("export the converted model"), [this] { exportModel(); });
    step(QStringLiteral("recover the export in PyTorch (or say why not), the command for another machine"), [this] { recover(); });
    step(QStringLiteral("save and reopen a session"), [this] { sessions(); });
    step(QStringLiteral("export the opened model as GGUF and reload it"), [this] { exportGguf(); });
    step(QStringLiteral("DeepSeek-V3 target: convert, every view, check, export as folder and GGUF, no heal, session"),
         [this] { deepSeekTarget(); });
    step(QStringLiteral("tour every tab at 1280x720 and 1920x1080: screenshots, nothing squeezed"), [this] { tour(); });
    if (m_failures.isEmpty()) {
        say(QStringLiteral("self-test: all %1 steps passed").arg(m_steps));
        return 0;
    }
    say(QStringLiteral("self-test: FAILED, %1 problem(s)").arg(m_failures.size()));
    return 1;
}

QStringList SelfTest::squeezedWidgets(QWidget* root)
{
    QStringList out;
    for (QWidget* w : root->findChildren<QWidget*>()) {
        if (!w->isVisible() || w->isWindow() || !w->layout())
            continue;
        const QSize hint = w->minimumSizeHint();
        if (!hint.isValid())
            continue;
        const int needW = std::min(hint.width(), w->maximumWidth());
        const int needH = std::min(hint.height(), w->maximumHeight());
        if (w->width() + 1 < needW || w->height() + 1 < needH) {
            QStringList path; // where it is: its ancestors' classes and names
            for (QWidget* p = w->parentWidget(); p && p != root; p = p->parentWidget())
                path.prepend(QString::fromLatin1(p->metaObject()->className()) + (p->objectName().isEmpty() ? QString() : QLatin1Char('#') + p->objectName()));
            out << QStringLiteral("%1 (%2, in %7) %3x%4 < %5x%6")
                       .arg(QString::fromLatin1(w->metaObject()->className()), w->objectName())
                       .arg(w->width())
                       .arg(w->height())
                       .arg(needW)
                       .arg(needH)
                       .arg(path.join(QLatin1Char('/')));
        }
    }
    return out;
}

void SelfTest::settleLayouts()
{
    // A layout pass can post the next (a label that wraps changes its height): a few rounds until none is pending.
    for (int i = 0; i < 5; ++i) {
        QCoreApplication::sendPostedEvents(nullptr, QEvent::LayoutRequest);
        QApplication::processEvents();
    }
}

void SelfTest::tour()
{
    // Screenshots go beside the program in the build tree (build/self-test-tour/), for a look after a run.
    const QString folder = QDir(QCoreApplication::applicationDirPath()).absoluteFilePath(QStringLiteral("../self-test-tour"));
    QDir().mkpath(folder);
    const QSize before = m_window->size();
    const char* const names[] = {"rope", "spectra", "preview", "sanity", "heal"};
    for (const QSize size : {QSize(1280, 720), QSize(1920, 1080)}) {
        m_window->resize(size);
        for (int tab = 0; tab < m_window->tabs()->count() && tab < 5; ++tab) {
            m_window->showTab(tab);
            settleLayouts();
            check(m_window->size() == size, QStringLiteral("the window is %1x%2 instead of %3x%4 on tab %5 (its minimum is %6x%7)")
                                               .arg(m_window->width())
                                               .arg(m_window->height())
                                               .arg(size.width())
                                               .arg(size.height())
                                               .arg(QString::fromLatin1(names[tab]))
                                               .arg(m_window->minimumSizeHint().width())
                                               .arg(m_window->minimumSizeHint().height()));
            const QStringList squeezed = squeezedWidgets(m_window);
            check(squeezed.isEmpty(), QStringLiteral("at %1x%2 on tab %3, squeezed below their minimum: %4")
                                          .arg(size.width())
                                          .arg(size.height())
                                          .arg(QString::fromLatin1(names[tab]), squeezed.join(QStringLiteral("; "))));
            const QString file = QStringLiteral("%1/%2x%3-%4.png").arg(folder).arg(size.width()).arg(size.height()).arg(QString::fromLatin1(names[tab]));
            QString error;
            check(saveScreenshot(m_window->grab().toImage(), file, m_tourIndexed, &error), error);
        }
    }
    m_window->resize(before);
    say(QStringLiteral("  screenshots in %1").arg(QDir(folder).canonicalPath()));
}

void SelfTest::openDemo()
{
    Workbench* wb = m_window->workbench();
    m_window->openDemo();
    check(waitUntil([wb] { return wb->hasModel() && !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("the demo model did not open: %1").arg(m_window->lastError()));
    check(m_window->windowTitle() == QStringLiteral("MLA Workbench \u2014 stories260K.bin"),
          QStringLiteral("window title is \"%1\"").arg(m_window->windowTitle()));
    check(m_window->modelPanel()->infoModel()->rowCount() >= 12, QStringLiteral("the model panel is empty"));
    check(wb->preview().problem.empty() && !wb->preview().layers.empty(), QStringLiteral("no KV preview before analysis"));
}

void SelfTest::rejectBrokenCheckpoint()
{
    Workbench* wb = m_window->workbench();
    const QString broken = QDir(m_dir).filePath(QStringLiteral("broken.safetensors"));
    QFile f(broken);
    check(f.open(QIODevice::WriteOnly) && f.write("\x10\x00\x00\x00\x00\x00\x00\x00{not json", 17) == 17, QStringLiteral("cannot write the broken file"));
    f.close();
    int errors = 0;
    const auto c = QObject::connect(wb, &Workbench::errorOccurred, [&errors] { ++errors; });
    m_window->openPath(broken);
    check(waitUntil([&] { return errors > 0 && !wb->isBusy(); }, 30000), QStringLiteral("no error was reported for a broken checkpoint"));
    QObject::disconnect(c);
    check(m_window->lastError().contains(QStringLiteral("broken.safetensors")),
          QStringLiteral("the error does not name the file: %1").arg(m_window->lastError()));
    check(wb->hasModel() && wb->modelName() == QStringLiteral("stories260K.bin"), QStringLiteral("the open model was lost"));
}

void SelfTest::cancelAnalysis()
{
    Workbench* wb = m_window->workbench();
    const AnalysisPtr before = wb->analysis();
    wb->analyze();
    check(wb->isBusy(), QStringLiteral("analysis did not start"));
    wb->cancel();
    check(waitUntil([wb] { return !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("cancel did not stop the analysis"));
    check(wb->analysis() == before, QStringLiteral("a cancelled analysis left a result behind"));
}

void SelfTest::analyze()
{
    Workbench* wb = m_window->workbench();
    const QString errorBefore = m_window->lastError();
    wb->analyze();
    check(waitUntil([wb] { return !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("analysis did not finish"));
    check(wb->analysis() != nullptr, QStringLiteral("no analysis: %1").arg(m_window->lastError()));
    if (!wb->analysis())
        return;
    check(static_cast<std::int64_t>(wb->analysis()->layers.size()) == wb->config()->layers, QStringLiteral("analysis has the wrong layer count"));
    check(wb->previewHasErrors() && wb->preview().meanWeightError >= 0, QStringLiteral("no predicted errors after analysis"));
    check(m_window->runBar()->progressBar()->value() == m_window->runBar()->progressBar()->maximum(), QStringLiteral("the progress bar did not reach 100%"));
}

void SelfTest::moveControls()
{
    Workbench* wb = m_window->workbench();
    SettingsPanel* s = m_window->settingsPanel();
    const ModelConfig& c = *wb->config();
    int previews = 0;
    const auto conn = QObject::connect(wb, &Workbench::previewChanged, [&previews] { ++previews; });
    auto expectPreview = [&](const QString& control) {
        check(previews > 0, QStringLiteral("%1 did not update the preview").arg(control));
        previews = 0;
    };

    for (int i = 0; i < s->strategyCombo()->count(); ++i) {
        s->strategyCombo()->setCurrentIndex(i);
        expectPreview(QStringLiteral("strategy %1").arg(s->strategyCombo()->itemText(i)));
        check(wb->preview().problem.empty(), QStringLiteral("strategy %1: %2").arg(s->strategyCombo()->itemText(i), QString::fromStdString(wb->preview().problem)));
        check(static_cast<std::int64_t>(wb->selections().size()) == c.layers, QStringLiteral("strategy %1 gave no selection").arg(s->strategyCombo()->itemText(i)));
    }
    s->strategyCombo()->setCurrentIndex(s->strategyCombo()->findData(static_cast<int>(RopeStrategy::Uniform)));
    s->uniformStartSpin()->setValue(1);
    expectPreview(QStringLiteral("uniform start"));
    s->strategyCombo()->setCurrentIndex(s->strategyCombo()->findData(static_cast<int>(RopeStrategy::TwoNorm)));
    previews = 0;

    for (int p = s->pairsSlider()->minimum(); p <= s->pairsSlider()->maximum(); ++p) {
        s->pairsSlider()->setValue(p);
        if (p != wb->resolvedRopePairs())
            check(false, QStringLiteral("pairs slider %1 gave %2 pairs").arg(p).arg(wb->resolvedRopePairs()));
        // Keeping (nearly) every pair can make the 75% target saving unreachable: that must show as a problem, not fail.
        check(wb->preview().problem.empty() != wb->preview().layers.empty(), QStringLiteral("pairs %1: inconsistent preview").arg(p));
        check(s->pairsNote()->text().contains(QString::number(2 * p)), QStringLiteral("pairs %1 are not shown as dims").arg(p));
    }
    s->pairsSlider()->setValue(static_cast<int>(defaultRopePairs(c)));
    expectPreview(QStringLiteral("pairs slider"));

    for (int i = s->methodCombo()->count() - 1; i >= 0; --i) {
        const bool changed = s->methodCombo()->currentIndex() != i;
        s->methodCombo()->setCurrentIndex(i);
        const QString name = s->methodCombo()->itemText(i);
        if (changed)
            expectPreview(QStringLiteral("method %1").arg(name));
        previews = 0;
        // A method that compresses only the keys or only the values may not reach the target saving on a small model:
        // that must show as a problem with no per-layer preview, never as a half-filled one.
        check(wb->preview().problem.empty() != wb->preview().layers.empty(),
              QStringLiteral("method %1: inconsistent preview (%2)").arg(name, QString::fromStdString(wb->preview().problem)));
        if (static_cast<LatentMethod>(s->methodCombo()->itemData(i).toInt()) == LatentMethod::Joint)
            check(wb->preview().problem.empty(), QStringLiteral("method %1: %2").arg(name, QString::fromStdString(wb->preview().problem)));
    }
    s->methodCombo()->setCurrentIndex(s->methodCombo()->findData(static_cast<int>(LatentMethod::Joint)));
    check(wb->settings().method == LatentMethod::Joint, QStringLiteral("the method combo has no joint entry"));

    const int lo = s->latentSlider()->minimum();
    const int hi = s->latentSlider()->maximum();
    for (int v : {lo, (lo + hi) / 2, hi, (lo + hi) / 3}) {
        s->latentSlider()->setValue(v);
        check(wb->resolvedLatent() == v, QStringLiteral("latent slider %1 gave d_c %2").arg(v).arg(wb->resolvedLatent()));
        check(!wb->preview().layers.empty() && wb->preview().layers[0].latentK == v, QStringLiteral("latent %1 not in the preview").arg(v));
        check(s->latentNote()->text().contains(QString::number(static_cast<double>(v) / static_cast<double>(c.kvHeads), 'g', 4)),
              QStringLiteral("latent %1 not shown per KV head").arg(v));
    }
    expectPreview(QStringLiteral("latent slider"));
    double last = -1;
    for (double saving : {50.0, 62.5, 75.0}) {
        s->savingSpin()->setValue(saving);
        check(std::abs(100.0 * wb->preview().kv.saving() - saving) < 100.0 / static_cast<double>(2 * c.kvDim()) + 1e-9,
              QStringLiteral("target saving %1% gave %2%").arg(saving).arg(100.0 * wb->preview().kv.saving()));
        check(wb->preview().meanWeightError >= last, QStringLiteral("a larger saving predicted a smaller error"));
        last = wb->preview().meanWeightError;
    }
    expectPreview(QStringLiteral("saving"));
    // The rotated keys alone take more than 1% of the cache: 99% is unreachable and must say so.
    s->savingSpin()->setValue(s->savingSpin()->maximum());
    check(!wb->preview().problem.empty() && wb->preview().layers.empty(), QStringLiteral("an unreachable saving showed no problem"));
    s->savingSpin()->setValue(75.0);
    check(wb->preview().problem.empty(), QStringLiteral("75% saving: %1").arg(QString::fromStdString(wb->preview().problem)));
    for (int i = 0; i < s->sigmaCombo()->count(); ++i)
        s->sigmaCombo()->setCurrentIndex(i);
    s->sigmaCombo()->setCurrentIndex(0);
    for (QCheckBox* box : {s->activationCheck(), s->balanceCheck(), s->refitCheck(), s->allocateCheck()}) {
        box->setChecked(!box->isChecked());
        box->setChecked(!box->isChecked());
    }
    for (int i = 0; i < s->presetCombo()->count(); ++i) {
        s->presetCombo()->setCurrentIndex(i);
        Q_EMIT s->presetCombo()->activated(i);
        check(wb->settings().preset == s->presetCombo()->itemData(i).toString().toStdString(), QStringLiteral("preset %1 not applied").arg(s->presetCombo()->itemText(i)));
    }
    s->presetCombo()->setCurrentIndex(0);
    Q_EMIT s->presetCombo()->activated(0);
    s->calibrationFileEdit()->setText(QDir(m_dir).filePath(QStringLiteral("calibration.txt")));
    Q_EMIT s->calibrationFileEdit()->editingFinished();
    s->calibrationSourceCombo()->setCurrentIndex(1);
    check(wb->calibration().source == CalibrationOptions::Source::Text, QStringLiteral("calibration source not applied"));
    s->calibrationSourceCombo()->setCurrentIndex(0);
    s->samplesSpin()->setValue(8);
    Q_EMIT s->samplesSpin()->editingFinished();
    check(wb->calibration().samples == 8, QStringLiteral("calibration samples not applied"));

    // Model panel controls.
    ModelPanel* m = m_window->modelPanel();
    m->contextSpin()->setValue(8192);
    m->batchSpin()->setValue(4);
    m->formatCombo()->setCurrentIndex(1);
    check(wb->contextLength() == 8192 && wb->batchSize() == 4 && wb->cacheFormat() == CacheFormat::Int8,
          QStringLiteral("the model panel's cache controls did not apply"));
    m->formatCombo()->setCurrentIndex(0);
    QObject::disconnect(conn);
}

void SelfTest::undoRedo()
{
    Workbench* wb = m_window->workbench();
    QUndoStack* undo = wb->undoStack();
    check(undo->count() > 10, QStringLiteral("only %1 undo steps were recorded").arg(undo->count()));
    const QVariantMap end = QVariantMap{{QStringLiteral("latent"), qlonglong(wb->resolvedLatent())},
                                        {QStringLiteral("pairs"), qlonglong(wb->resolvedRopePairs())},
                                        {QStringLiteral("strategy"), static_cast<int>(wb->settings().strategy)}};
    const int index = undo->index();
    undo->setIndex(0);
    check(wb->settings().strategy == RopeStrategy::TwoNorm && wb->settings().latentDim < 0,
          QStringLiteral("undo to the start did not restore the first settings"));
    undo->setIndex(index);
    const QVariantMap again = QVariantMap{{QStringLiteral("latent"), qlonglong(wb->resolvedLatent())},
                                          {QStringLiteral("pairs"), qlonglong(wb->resolvedRopePairs())},
                                          {QStringLiteral("strategy"), static_cast<int>(wb->settings().strategy)}};
    check(end == again, QStringLiteral("redo did not restore the last settings"));
}

void SelfTest::ropeView()
{
    Workbench* wb = m_window->workbench();
    m_window->showTab(MainWindow::RopeTab);
    RopeView* v = m_window->ropeView();
    const ModelConfig& c = *wb->config();
    for (int h = 0; h < v->headCombo()->count(); ++h) {
        v->headCombo()->setCurrentIndex(h);
        for (int m = 0; m < v->measureCombo()->count(); ++m) {
            v->measureCombo()->setCurrentIndex(m);
            const view::ScoreGrid& g = v->heatmap()->grid();
            check(g.rows == c.layers && g.columns == (h == 0 ? c.kvHeads : 1) * c.pairsPerHead(),
                  QStringLiteral("heatmap head %1 measure %2 has shape %3 x %4").arg(h).arg(m).arg(g.rows).arg(g.columns));
        }
    }
    v->headCombo()->setCurrentIndex(0);
    v->measureCombo()->setCurrentIndex(0);
    const view::ScoreGrid& g = v->heatmap()->grid();
    const auto kept = std::count(g.kept.begin(), g.kept.end(), std::uint8_t{1});
    check(kept == c.layers * c.kvHeads * wb->resolvedRopePairs(), QStringLiteral("%1 cells outlined, expected %2").arg(kept).arg(c.layers * c.kvHeads * wb->resolvedRopePairs()));
    const QString text = v->heatmap()->cellText(0, 0);
    check(text.contains(QStringLiteral("wavelength")) && text.contains(QStringLiteral("frequency")), QStringLiteral("hover text lacks frequency and wavelength"));
    v->logCheck()->setChecked(true);
    check(v->heatmap()->logScale(), QStringLiteral("log scale not applied"));
    v->logCheck()->setChecked(false);
}

void SelfTest::spectrumView()
{
    Workbench* wb = m_window->workbench();
    m_window->showTab(MainWindow::SpectraTab);
    SpectrumView* v = m_window->spectrumView();
    for (int k = SpectrumView::Joint; k <= SpectrumView::Split; ++k) {
        v->setKind(static_cast<SpectrumView::Kind>(k));
        check(v->plot()->seriesCount() == (k == SpectrumView::Split ? 2 : 1) * wb->config()->layers,
              QStringLiteral("spectrum kind %1 shows %2 series").arg(k).arg(v->plot()->seriesCount()));
    }
    for (int i = 0; i < v->sourceCombo()->count(); ++i)
        v->sourceCombo()->setCurrentIndex(i);
    v->setKind(SpectrumView::Joint);
    v->sourceCombo()->setCurrentIndex(0);
    check(v->plot()->rankCursorVisible(), QStringLiteral("no rank cursor on the joint spectrum"));
    const std::int64_t target = std::max<std::int64_t>(2, wb->resolvedLatent() / 2);
    v->plot()->dragCursorTo(target);
    check(wb->resolvedLatent() == target, QStringLiteral("dragging the cursor to %1 set d_c %2").arg(target).arg(wb->resolvedLatent()));
    check(v->plot()->rankCursor() == target, QStringLiteral("the cursor did not follow"));
    wb->undoStack()->undo();
    v->layerCombo()->setCurrentIndex(1);
    v->layerCombo()->setCurrentIndex(0);
}

void SelfTest::previewView()
{
    Workbench* wb = m_window->workbench();
    m_window->showTab(MainWindow::PreviewTab);
    PreviewView* v = m_window->previewView();
    LayerPreviewModel* model = v->layerModel();
    check(model->rowCount() == wb->config()->layers, QStringLiteral("the preview table has %1 rows").arg(model->rowCount()));
    check(v->summaryText().contains(QStringLiteral("\u2192")), QStringLiteral("the preview summary is empty"));
    const std::int64_t global = wb->resolvedLatent();
    const std::int64_t layerLatent = std::max<std::int64_t>(1, global / 2);
    model->setData(model->index(0, LayerPreviewModel::LatentColumn), qlonglong(layerLatent));
    check(wb->lockedLayers().at(0), QStringLiteral("editing a layer's latent did not lock it"));
    check(wb->preview().layers[0].latentK == layerLatent, QStringLiteral("layer 0's latent is not %1").arg(layerLatent));
    m_window->settingsPanel()->latentSpin()->setValue(static_cast<int>(global + 1));
    check(wb->preview().layers[0].latentK == layerLatent && wb->preview().layers[1].latentK == global + 1,
          QStringLiteral("the locked layer moved with the global latent (layer 0: %1, expected %2; layer 1: %3, expected %4)")
              .arg(wb->preview().layers[0].latentK)
              .arg(layerLatent)
              .arg(wb->preview().layers[1].latentK)
              .arg(global + 1));
    model->setData(model->index(0, LayerPreviewModel::LockColumn), Qt::Unchecked, Qt::CheckStateRole);
    check(!wb->lockedLayers().at(0) && wb->preview().layers[0].latentK == global + 1, QStringLiteral("unlocking did not release the layer"));
    for (int i = 0; i < v->compareCombo()->count(); ++i)
        v->compareCombo()->setCurrentIndex(i);
    v->compareCombo()->setCurrentIndex(0);
    m_window->settingsPanel()->savingSpin()->setValue(75.0);
}

void SelfTest::explainer()
{
    ExplainerPanel* e = m_window->explainer();
    const auto values = e->values();
    check(values.value(QStringLiteral("d_c")) == QString::number(m_window->workbench()->resolvedLatent()), QStringLiteral("the explainer's d_c is stale"));
    check(values.value(QStringLiteral("saving")).endsWith(QLatin1Char('%')), QStringLiteral("the explainer shows no saving"));
    check(!e->html().contains(QStringLiteral("%{")), QStringLiteral("unreplaced placeholders in the explainer"));
    for (const QString& topic : {QStringLiteral("rope"), QStringLiteral("svd"), QStringLiteral("absorb"), QStringLiteral("cache")})
        e->showTopic(topic);
}

void SelfTest::convertAndCheck()
{
    Workbench* wb = m_window->workbench();
    wb->convert();
    check(waitUntil([wb] { return !wb->isBusy() && wb->conversion() && wb->sanity(); }, kJobTimeoutMs),
          QStringLiteral("conversion or sanity check did not finish: %1").arg(m_window->lastError()));
    if (!wb->sanity())
        return;
    const SanityReport& r = *wb->sanity();
    check(std::isfinite(r.originalPpl) && std::isfinite(r.convertedPpl) && r.originalPpl > 1.0 && r.convertedPpl > 1.0,
          QStringLiteral("perplexities %1 / %2").arg(r.originalPpl).arg(r.convertedPpl));
    check(r.kl >= 0.0 && r.top1Agreement >= 0.0 && r.top1Agreement <= 1.0, QStringLiteral("KL %1, agreement %2").arg(r.kl).arg(r.top1Agreement));
    check(r.convertedKvBytesPerToken < r.originalKvBytesPerToken,
          QStringLiteral("the converted cache is not smaller: %1 vs %2 bytes").arg(r.convertedKvBytesPerToken).arg(r.originalKvBytesPerToken));
    check(!r.generations.empty() && !r.generations[0].originalIds.empty(), QStringLiteral("no generations"));
    SanityView* v = m_window->sanityView();
    check(v->metricsModel()->rowCount() == 6, QStringLiteral("the metrics table has %1 rows").arg(v->metricsModel()->rowCount()));
    check(v->originalHtml().contains(QStringLiteral("Once upon a time")), QStringLiteral("the prompt is not shown"));
    check(m_window->tabs()->currentIndex() == MainWindow::SanityTab, QStringLiteral("the sanity tab was not shown"));
    // The re-run also measures an int4 latent cache (RoPE keys in their default, int8).
    v->promptEdit()->setText(QStringLiteral("The cat"));
    v->cacheCombo()->setCurrentIndex(v->cacheCombo()->findData(QStringLiteral("int4")));
    wb->runSanityCheck();
    check(waitUntil([wb] { return !wb->isBusy(); }, kJobTimeoutMs) && wb->sanity() && wb->sanity()->generations[0].prompt == "The cat",
          QStringLiteral("a re-run with a new prompt failed"));
    if (!wb->sanity())
        return;
    const CacheFormatQuality& q = wb->sanity()->withCache;
    check(q.format == "int4/64+rope:int8/64" && q.kvBytesPerToken > 0 && q.kvBytesPerToken < wb->sanity()->convertedKvBytesPerToken
              && std::isfinite(q.ppl) && q.top1Agreement > 0.0,
          QStringLiteral("the int4 cache check: %1, %2 bytes per token, PPL %3").arg(QString::fromStdString(q.format)).arg(q.kvBytesPerToken).arg(q.ppl));
    int measured = 0;
    for (const MemoryPlot::Curve& c : m_window->previewView()->memoryPlot()->curves())
        measured += c.measured ? 1 : 0;
    check(measured == 4, QStringLiteral("the memory plot shows %1 measured series, not 4").arg(measured));
    v->cacheCombo()->setCurrentIndex(v->cacheCombo()->findData(QStringLiteral("int8")));
}

void SelfTest::heal()
{
    Workbench* wb = m_window->workbench();
    HealView* v = m_window->healView();
    m_window->showTab(MainWindow::HealTab);
    const std::int64_t layers = wb->config()->layers;
    check(v->healButton()->isEnabled(), QStringLiteral("the Heal button is disabled after a conversion"));
    // Small data: 16 sequences of 32 tokens (2 held out).
    v->tokensSpin()->setValue(512);
    v->sequenceLengthSpin()->setValue(32);
    v->seedSpin()->setValue(3);
    check(v->costText().contains(QStringLiteral("token-steps")), QStringLiteral("no expected cost shown: %1").arg(v->costText()));

    // Stopped while layer 2 trains, keeping what is finished: layer 1 healed, the others as converted.
    v->stepsSpin()->setValue(300);
    int stops = 0;
    auto stopIn = [&](bool keep) {
        return QObject::connect(wb, &Workbench::healStepped, [&stops, v, keep](const HealProgress& p, const QString&) {
            if (p.layer == (keep ? 1 : 0) && p.step >= 1 && stops == 0) {
                ++stops;
                v->onStopCombo()->setCurrentIndex(v->onStopCombo()->findData(keep));
                v->stopButton()->click();
            }
        });
    };
    auto conn = stopIn(true);
    v->healButton()->click();
    check(wb->isHealing() && v->stopButton()->isEnabled(), QStringLiteral("the heal did not start: %1").arg(m_window->lastError()));
    check(waitUntil([wb] { return !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("a stopped heal did not end"));
    QObject::disconnect(conn);
    check(stops == 1, QStringLiteral("the heal was never stopped"));
    check(wb->heal() && wb->heal()->report.cancelled && wb->heal()->report.layersHealed == 1 && wb->healedConversion(),
          QStringLiteral("stopping in layer 2 and keeping did not leave exactly layer 1 healed (%1 layers)")
              .arg(wb->heal() ? wb->heal()->report.layersHealed : -1));
    const std::int64_t keptLayers = wb->heal() ? wb->heal()->report.layersHealed : -1;

    // Stopped in layer 1, discarding: the heal before it stays as it was.
    stops = 0;
    conn = stopIn(false);
    v->healButton()->click();
    check(waitUntil([wb] { return !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("a discarded heal did not end"));
    QObject::disconnect(conn);
    check(stops == 1 && wb->heal() && wb->heal()->report.layersHealed == keptLayers && wb->healedConversion(),
          QStringLiteral("a discarded heal changed the model (stops %1, %2 layers healed, before %3)")
              .arg(stops)
              .arg(wb->heal() ? wb->heal()->report.layersHealed : -1)
              .arg(keptLayers));

    // A tiny full heal: 5 steps per layer, then the check of the healed model beside the unhealed one.
    v->stepsSpin()->setValue(5);
    v->healButton()->click();
    check(waitUntil([wb] { return !wb->isBusy() && wb->heal() && wb->heal()->sanity && !wb->heal()->report.cancelled; }, kJobTimeoutMs),
          QStringLiteral("the heal or its check did not finish: %1").arg(m_window->lastError()));
    if (!wb->heal() || !wb->heal()->sanity)
        return;
    const SessionHeal& h = *wb->heal();
    check(h.report.layersHealed == layers && static_cast<std::int64_t>(h.report.layers.size()) == layers,
          QStringLiteral("%1 of %2 layers healed").arg(h.report.layersHealed).arg(layers));
    check(h.options.steps == 5 && h.options.data.tokens == 512 && h.options.seed == 3, QStringLiteral("the heal did not use the view's settings"));
    // Five steps make each layer's held-out block loss no worse (checked below), not necessarily the model's KL.
    check(h.report.before && h.report.after && std::isfinite(h.report.after->kl) && h.report.before->kl > 0.0,
          QStringLiteral("held-out KL before/after missing"));
    for (const LayerHealReport& l : h.report.layers)
        check(l.heldOutAfter <= l.heldOutBefore, QStringLiteral("layer %1 ended worse on held-out data").arg(l.layer));
    const QList<BarPlot::Series>& series = v->lossPlot()->series();
    check(series.size() == 2 && static_cast<std::int64_t>(series[0].values.size()) == layers && series[1].values.back() >= 0.0,
          QStringLiteral("the loss plot does not show every layer before and after"));
    check(v->layerProgress()->value() == v->layerProgress()->maximum(), QStringLiteral("the per-layer progress did not reach the end"));
    check(v->resultsTable()->rowCount() >= 6, QStringLiteral("the results table has %1 rows").arg(v->resultsTable()->rowCount()));
    check(wb->sanity() && h.sanity->kl != wb->sanity()->kl && h.sanity->originalPpl == wb->sanity()->originalPpl,
          QStringLiteral("the healed model's check is not shown beside the unhealed one"));
    check(wb->healedConversion() && wb->healedConversion()->heal && wb->healedConversion()->heal->layersHealed == layers,
          QStringLiteral("the healed model carries no heal for its model card"));
}

void SelfTest::exportPlots()
{
    QDir dir(m_dir);
    dir.mkpath(QStringLiteral("plots"));
    for (int t = 0; t < m_window->tabs()->count(); ++t)
        m_window->showTab(t); // every plot laid out once
    const QList<PlotWidget*> plots = m_window->plots();
    QSet<QString> kinds;
    for (PlotWidget* p : plots)
        kinds.insert(QString::fromLatin1(p->metaObject()->className()));
    for (const char* kind : {"mla::HeatmapPlot", "mla::SpectrumPlot", "mla::BarPlot", "mla::MemoryPlot"})
        check(kinds.contains(QString::fromLatin1(kind)), QStringLiteral("no %1 in the window").arg(QString::fromLatin1(kind)));
    int n = 0;
    for (PlotWidget* p : plots) {
        for (const QString& format : PlotWidget::exportFormats()) {
            const QString path = dir.filePath(QStringLiteral("plots/%1-%2.%3").arg(n).arg(QString::fromLatin1(p->metaObject()->className() + 5)).arg(format));
            QString error;
            const bool ok = p->exportTo(path, &error);
            check(ok && QFileInfo(path).size() > 0, QStringLiteral("%1 as %2: %3").arg(p->title(), format, error));
            if (ok && format == QLatin1String("svg")) {
                QFile f(path);
                f.open(QIODevice::ReadOnly);
                const QByteArray head = f.read(200);
                check(head.startsWith("<?xml") && head.contains("<svg"), QStringLiteral("%1.svg is not SVG").arg(p->title()));
            }
        }
        ++n;
    }
}

void SelfTest::exportModel()
{
    Workbench* wb = m_window->workbench();
    const QString folder = QDir(m_dir).filePath(QStringLiteral("stories260K-mla"));
    QString exported;
    const auto c = QObject::connect(wb, &Workbench::exported, [&exported](const QString& f) { exported = f; });
    wb->exportTo(folder);
    check(waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs) && exported == folder, QStringLiteral("export failed: %1").arg(m_window->lastError()));
    QObject::disconnect(c);
    check(QFileInfo::exists(QDir(folder).filePath(QStringLiteral("config.json"))), QStringLiteral("no config.json in the export"));
    check(QFileInfo::exists(QDir(folder).filePath(QStringLiteral("README.md"))), QStringLiteral("no model card README.md in the export"));
    const OpenedModel reopened = pipeline::openModel({folder.toStdString(), std::nullopt, false}, ExecutionContext());
    const Model& reloaded = *reopened.model;
    check(reloaded.config.isMla() && reloaded.config.layers == wb->config()->layers, QStringLiteral("the exported model does not load as MLA"));
}

void SelfTest::recover()
{
    Workbench* wb = m_window->workbench();
    const QString student = QDir(m_dir).filePath(QStringLiteral("stories260K-mla"));
    RecoveryDialog dialog(wb->modelPath(), wb->lastExportFolder(), m_window);
    check(dialog.studentEdit()->text() == student, QStringLiteral("the dialog does not start from the last export: %1").arg(dialog.studentEdit()->text()));
    check(dialog.outEdit()->text() == student + QStringLiteral("-recovered"), QStringLiteral("no default output folder"));
    dialog.stepsBox()->setValue(3);
    check(dialog.commandLine().contains(QStringLiteral("recovery/distill.py")) && dialog.commandLine().contains(QStringLiteral(" --teacher "))
              && dialog.commandLine().contains(QStringLiteral(" --steps 3 ")),
          QStringLiteral("the command line does not follow the dialog: %1").arg(dialog.commandLine()));

    // A Python that is not there: an error saying so, with the command to run elsewhere, and nothing written.
    pipeline::RecoveryRequest request = dialog.request();
    request.recipeOptions = {{"steps", "3"}, {"sample", "8"}, {"seq-len", "32"}, {"batch", "4"}, {"lr", "3e-3"}};
    pipeline::RecoveryRequest missing = request;
    missing.python = QDir(m_dir).filePath(QStringLiteral("no-python")).toStdString();
    int errors = 0;
    auto c = QObject::connect(wb, &Workbench::errorOccurred, [&errors] { ++errors; });
    wb->recoverExport(missing);
    check(waitUntil([&] { return errors > 0 && !wb->isBusy(); }, kJobTimeoutMs) && m_window->lastError().contains(QStringLiteral("no Python with PyTorch")),
          QStringLiteral("a missing Python was not reported: %1").arg(m_window->lastError()));
    QObject::disconnect(c);
    check(!QFileInfo::exists(QString::fromStdString(request.out.string())), QStringLiteral("a failed recovery left a folder"));

    // The real run where this machine has PyTorch (CI does); otherwise the same clear error.
    errors = 0;
    double before = 0.0, after = 0.0;
    bool recovered = false;
    c = QObject::connect(wb, &Workbench::errorOccurred, [&errors] { ++errors; });
    const auto r = QObject::connect(wb, &Workbench::recovered, [&](const QString&, double b, double a) {
        recovered = true;
        before = b;
        after = a;
    });
    wb->recoverExport(request);
    check(waitUntil([&] { return (recovered || errors > 0) && !wb->isBusy(); }, kJobTimeoutMs), QStringLiteral("the recovery did not finish"));
    QObject::disconnect(c);
    QObject::disconnect(r);
    if (recovered) {
        check(after < before, QStringLiteral("3 steps did not lower the held-out KL: %1 -> %2").arg(before).arg(after));
        check(QFileInfo::exists(QDir(QString::fromStdString(request.out.string())).filePath(QStringLiteral("recovery.json"))),
              QStringLiteral("no recovery.json in the recovered folder"));
        say(QStringLiteral("        recovered: held-out KL %1 -> %2").arg(before, 0, 'f', 4).arg(after, 0, 'f', 4));
    } else {
        check(m_window->lastError().contains(QStringLiteral("no Python with PyTorch")), QStringLiteral("recovery failed: %1").arg(m_window->lastError()));
        say(QStringLiteral("        no PyTorch here: the recovery said so (%1)").arg(m_window->lastError().left(80)));
    }
}

void SelfTest::sessions()
{
    Workbench* wb = m_window->workbench();
    const QString path = QDir(m_dir).filePath(QStringLiteral("session.h5"));
    QString saved;
    auto c = QObject::connect(wb, &Workbench::sessionSaved, [&saved](const QString& p) { saved = p; });
    const std::int64_t latent = wb->resolvedLatent();
    const std::optional<SessionHeal> heal = wb->heal();
    wb->saveSession(path);
    check(waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs) && saved == path, QStringLiteral("session save failed: %1").arg(m_window->lastError()));
    QObject::disconnect(c);
    const AnalysisPtr before = wb->analysis();
    m_window->settingsPanel()->latentSpin()->setValue(static_cast<int>(latent + 1));
    wb->openSession(path);
    check(waitUntil([&] { return !wb->isBusy() && wb->analysis() != before; }, kJobTimeoutMs), QStringLiteral("session open failed: %1").arg(m_window->lastError()));
    check(wb->hasModel(), QStringLiteral("reopening the session of the open model dropped the model"));
    check(wb->analysis() && wb->analysis()->layers.size() == before->layers.size(), QStringLiteral("the session's analysis differs"));
    check(wb->resolvedLatent() == latent, QStringLiteral("the session's settings were not restored (d_c %1, saved %2)").arg(wb->resolvedLatent()).arg(latent));
    check(wb->heal() && heal && wb->heal()->report.layersHealed == heal->report.layersHealed && wb->heal()->sanity
              && wb->heal()->report.after && heal->report.after && wb->heal()->report.after->kl == heal->report.after->kl,
          QStringLiteral("the session's heal was not restored"));
}

// ---------------------------------------------------------------------------------------------------- screenshot

int takeScreenshot(MainWindow* window, const QString& model, const QString& path, int tab)
{
    Workbench* wb = window->workbench();
    if (model.isEmpty())
        window->openDemo();
    else
        window->openPath(model);
    if (!SelfTest::waitUntil([wb] { return wb->hasModel() && !wb->isBusy(); }, SelfTest::kJobTimeoutMs)) {
        SelfTest::say(QStringLiteral("screenshot: the model did not open: %1").arg(window->lastError()));
        return 1;
    }
    wb->analyze();
    if (!SelfTest::waitUntil([wb] { return wb->analysis() && !wb->isBusy(); }, SelfTest::kJobTimeoutMs)) {
        SelfTest::say(QStringLiteral("screenshot: analysis failed: %1").arg(window->lastError()));
        return 1;
    }
    window->showTab(tab);
    SelfTest::waitUntil([] { return false; }, 600); // let queued replots and layouts settle
    const QImage image = window->grab().toImage();
    QString error;
    if (!saveScreenshot(image, path, false, &error)) {
        SelfTest::say(QStringLiteral("screenshot: %1").arg(error));
        return 1;
    }
    SelfTest::say(QStringLiteral("screenshot: wrote %1 (%2 x %3)").arg(path).arg(image.width()).arg(image.height()));
    return 0;
}

} // namespace mla
