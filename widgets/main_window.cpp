#include "main_window.h"

#include "document/settings_store.h"
#include "document/workbench.h"
#include "formats/gguf_writer.h"
#include "panels/explainer_panel.h"
#include "panels/gguf_export_dialog.h"
#include "panels/heal_view.h"
#include "panels/model_panel.h"
#include "panels/preview_view.h"
#include "panels/recovery_dialog.h"
#include "panels/rope_view.h"
#include "panels/run_bar.h"
#include "panels/sanity_view.h"
#include "panels/settings_panel.h"
#include "panels/spectrum_view.h"
#include "panels/user_guide.h"
#include "plots/plot_widget.h"
#include "util/demo_model.h"
#include "util/error.h"
#include "pipeline/sessions.h"
#include "user_prompts.h"
#include "util/output_safety.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QStyle>
#include <QScrollArea>
#include <QScrollBar>
#include <QScreen>
#include <QGuiApplication>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QToolBar>
#include <QUndoStack>

#include <utility>

namespace mla {
namespace {

constexpr int kMaxRecent = 8;
const QStringList kCheckpointSuffixes = {QStringLiteral("safetensors"), QStringLiteral("bin"), QStringLiteral("gguf"),
                                         QStringLiteral("json")};

bool isSessionFile(const QString& path)
{
    return QFileInfo(path).suffix().compare(QLatin1String("h5"), Qt::CaseInsensitive) == 0;
}

bool canOpen(const QString& path)
{
    const QFileInfo info(path);
    return info.isDir() || kCheckpointSuffixes.contains(info.suffix().toLower()) || isSessionFile(path);
}

} // namespace

MainWindow::MainWindow(QWidget* parent) : MainWindow(Options(), parent) {}

MainWindow::MainWindow(const Options& options, QWidget* parent)
    : QMainWindow(parent), m_options(options), m_prompts(options.interactive ? dialogPrompts() : nullptr)
{
    m_workbench = new Workbench(this);
    build();
    buildMenus();
    restoreState();
    updateTitle();
    updateActions();
}

MainWindow::~MainWindow() = default;

void MainWindow::build()
{
    setObjectName(QStringLiteral("MainWindow"));
    setAcceptDrops(true);
    setDockOptions(QMainWindow::AnimatedDocks | QMainWindow::AllowTabbedDocks);

    m_ropeView = new RopeView(m_workbench, this);
    m_spectrumView = new SpectrumView(m_workbench, this);
    m_previewView = new PreviewView(m_workbench, this);
    m_sanityView = new SanityView(m_workbench, this);
    m_tabs = new QTabWidget(this);
    m_tabs->setDocumentMode(true);
    m_tabs->addTab(m_ropeView, tr("RoPE contribution"));
    m_tabs->addTab(m_spectrumView, tr("Spectra"));
    m_tabs->addTab(m_previewView, tr("Preview"));
    m_tabs->addTab(m_sanityView, tr("Sanity check"));
    m_healView = new HealView(m_workbench, this);
    m_tabs->addTab(m_healView, tr("Heal"));
    m_tabs->setTabToolTip(RopeTab, tr("Which frequency pairs matter: the per-pair scores of every layer and head (Ctrl+1)"));
    m_tabs->setTabToolTip(SpectraTab, tr("Singular values of the key/value projections and the rank cursor (Ctrl+2)"));
    m_tabs->setTabToolTip(PreviewTab, tr("Predicted error, KV cache and memory of the current settings (Ctrl+3)"));
    m_tabs->setTabToolTip(SanityTab, tr("The converted model against the original (Ctrl+4)"));
    m_tabs->setTabToolTip(HealTab, tr("Win back the conversion's loss by block-wise distillation, layer by layer (Ctrl+5)"));
    setCentralWidget(m_tabs);

    m_modelPanel = new ModelPanel(m_workbench, this);
    m_modelDock = new QDockWidget(tr("Model"), this);
    m_modelDock->setObjectName(QStringLiteral("ModelDock"));
    m_modelDock->setWidget(m_modelPanel);
    addDockWidget(Qt::LeftDockWidgetArea, m_modelDock);

    m_settingsPanel = new SettingsPanel(m_workbench, this);
    auto* scroll = new QScrollArea(this);
    scroll->setWidget(m_settingsPanel);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    // Never narrower than the panel itself: with no horizontal scroll bar the controls would be cut off.
    scroll->setMinimumWidth(m_settingsPanel->minimumSizeHint().width() + scroll->verticalScrollBar()->sizeHint().width());
    m_settingsDock = new QDockWidget(tr("Settings"), this);
    m_settingsDock->setObjectName(QStringLiteral("SettingsDock"));
    m_settingsDock->setWidget(scroll);
    addDockWidget(Qt::LeftDockWidgetArea, m_settingsDock);
    splitDockWidget(m_modelDock, m_settingsDock, Qt::Vertical);

    m_explainer = new ExplainerPanel(m_workbench, this);
    m_explainerDock = new QDockWidget(tr("How it works"), this);
    m_explainerDock->setObjectName(QStringLiteral("ExplainerDock"));
    m_explainerDock->setWidget(m_explainer);
    addDockWidget(Qt::RightDockWidgetArea, m_explainerDock);
    resizeDocks({m_modelDock, m_explainerDock}, {350, 310}, Qt::Horizontal);
    resizeDocks({m_modelDock, m_settingsDock}, {300, 520}, Qt::Vertical);

    m_runBar = new RunBar(m_workbench, this);
    auto* runToolBar = new QToolBar(tr("Run"), this);
    runToolBar->setObjectName(QStringLiteral("RunBar"));
    runToolBar->setMovable(false);
    runToolBar->addWidget(m_runBar);
    addToolBar(Qt::BottomToolBarArea, runToolBar);

    connect(m_settingsPanel, &SettingsPanel::topicRequested, m_explainer, &ExplainerPanel::showTopic);
    connect(m_tabs, &QTabWidget::currentChanged, this, [this](int tab) {
        static const char* const topics[] = {"rope", "svd", "cache", "absorb"};
        if (tab >= 0 && tab < 4)
            m_explainer->showTopic(QString::fromLatin1(topics[tab]));
    });
    connect(m_workbench, &Workbench::modelChanged, this, [this] {
        updateTitle();
        updateActions();
        if (m_workbench->hasModel())
            addRecent(m_workbench->modelPath());
        if (m_workbench->hasModel() && !m_pendingSession.isEmpty())
            m_workbench->openSession(std::exchange(m_pendingSession, QString()));
    });
    connect(m_workbench, &Workbench::sessionOpened, this, &MainWindow::onSessionOpened);
    connect(m_workbench, &Workbench::sessionSaved, this, [this](const QString& path) {
        addRecent(path);
        if (m_closeAfterSave) {
            m_closeAfterSave = false;
            close();
        } else if (!m_openAfterSave.isEmpty()) {
            openPath(std::exchange(m_openAfterSave, QString()));
        }
    });
    connect(m_workbench, &Workbench::errorOccurred, this, [this] { // a save that failed: stay, nothing is lost
        m_closeAfterSave = false;
        m_openAfterSave.clear();
    });
    connect(m_workbench, &Workbench::analysisChanged, this, &MainWindow::updateActions);
    connect(m_workbench, &Workbench::conversionChanged, this, &MainWindow::updateActions);
    connect(m_workbench, &Workbench::busyChanged, this, &MainWindow::updateActions);
    connect(m_workbench, &Workbench::previewChanged, this, &MainWindow::updateActions);
    connect(m_workbench, &Workbench::errorOccurred, this, &MainWindow::showError);
    connect(m_workbench, &Workbench::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m, 10000); });
    // The GGUF report (and the llama-cli command to copy) outlives the status bar's ten seconds: a box that does not block.
    connect(m_workbench, &Workbench::ggufExported, this, [this](const GgufExportReport& r) {
        if (!m_options.interactive)
            return;
        auto* box = new QMessageBox(QMessageBox::Information, tr("Exported as GGUF"),
                                    tr("Wrote %1").arg(QString::fromStdString(r.file.string())), QMessageBox::Ok, this);
        box->setInformativeText(Workbench::ggufReportText(r));
        box->setDetailedText(QString::fromStdString(r.modelCard));
        box->setTextInteractionFlags(Qt::TextSelectableByMouse);
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->open();
    });
    connect(m_workbench, &Workbench::jobStarted, this, [this](const QString& t) { statusBar()->showMessage(tr("%1…").arg(t)); });
    // The job's "…" would stay until the next message, long after it ended: its outcome replaces it. A message shown
    // since (an error, a cancel, a session without its model) says more and stays.
    connect(m_workbench, &Workbench::jobFinished, this, [this](const QString& t, bool ok) {
        if (statusBar()->currentMessage() == tr("%1…").arg(t))
            statusBar()->showMessage(ok ? tr("%1: done").arg(t) : tr("%1: stopped").arg(t), 10000);
    });
    connect(m_workbench, &Workbench::analysisChanged, this, [this] {
        if (m_workbench->analysis() && m_tabs->currentIndex() == SanityTab)
            showTab(RopeTab);
    });
    connect(m_workbench, &Workbench::sanityChanged, this, [this] {
        if (m_workbench->sanity())
            showTab(SanityTab);
    });
    statusBar()->showMessage(tr("Ready"));
}

void MainWindow::buildMenus()
{
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* open = file->addAction(style()->standardIcon(QStyle::SP_DialogOpenButton), tr("&Open Checkpoint…"), this, &MainWindow::openFileDialog);
    open->setShortcut(QKeySequence::Open);
    open->setStatusTip(tr("Open a .safetensors, llama2.c .bin or .gguf checkpoint (or drop one on the window)"));
    QAction* openFolder = file->addAction(tr("Open &Folder…"), this, &MainWindow::openFolderDialog);
    openFolder->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_D));
    openFolder->setStatusTip(tr("Open a Hugging Face model folder (config.json + safetensors)"));
    file->addAction(tr("Open &Demo Model"), this, &MainWindow::openDemo)->setStatusTip(tr("The bundled stories260K checkpoint"));
    m_recentMenu = file->addMenu(tr("Open &Recent"));
    file->addSeparator();
    m_openSession = file->addAction(tr("Open Sess&ion…"), this, &MainWindow::openSessionDialog);
    m_openSession->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    m_saveSession = file->addAction(style()->standardIcon(QStyle::SP_DialogSaveButton), tr("&Save Session…"), this, &MainWindow::saveSessionDialog);
    m_saveSession->setShortcut(QKeySequence::Save);
    m_saveSession->setStatusTip(tr("Save the analysis, settings and check results to an HDF5 session"));
    file->addSeparator();
    m_export = file->addAction(tr("&Export Converted Model…"), this, &MainWindow::exportDialog);
    m_export->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    m_export->setStatusTip(tr("Write the converted model as a Hugging Face folder in the MHA2MLA layout"));
    m_exportGguf = file->addAction(tr("Export as &GGUF…"), this, &MainWindow::ggufExportDialog);
    m_exportGguf->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
    m_exportGguf->setStatusTip(tr("Write one GGUF file for llama.cpp: a DeepSeek-V3-target conversion as its deepseek2 "
                                  "architecture, else the opened model as it is"));
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* edit = menuBar()->addMenu(tr("&Edit"));
    QAction* undo = m_workbench->undoStack()->createUndoAction(this, tr("&Undo"));
    undo->setShortcut(QKeySequence::Undo);
    QAction* redo = m_workbench->undoStack()->createRedoAction(this, tr("&Redo"));
    redo->setShortcuts({QKeySequence::Redo, QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z)});
    edit->addAction(undo);
    edit->addAction(redo);

    QMenu* run = menuBar()->addMenu(tr("&Run"));
    m_analyze = run->addAction(tr("&Analyze"), m_workbench, &Workbench::analyze);
    m_analyze->setShortcut(QKeySequence(Qt::Key_F5));
    m_analyze->setStatusTip(tr("Calibrate, score every RoPE pair and compute the key/value spectra"));
    m_convert = run->addAction(tr("&Convert"), m_workbench, &Workbench::convert);
    m_convert->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
    m_check = run->addAction(tr("&Sanity Check"), m_workbench, &Workbench::runSanityCheck);
    m_check->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_T));
    m_healAction = run->addAction(tr("&Heal…"), this, [this] { showTab(HealTab); });
    m_healAction->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_H));
    m_healAction->setStatusTip(tr("Heal the converted model by block-wise distillation (the Heal tab: steps, tokens, learning rate)"));
    m_recoverAction = run->addAction(tr("&Recover in PyTorch…"), this, &MainWindow::recoverDialog);
    m_recoverAction->setStatusTip(tr("Distil an exported model from the original with the export's PyTorch recipe, here or (its command) elsewhere"));
    run->addSeparator();
    m_cancel = run->addAction(tr("C&ancel"), m_workbench, &Workbench::cancel);
    m_cancel->setShortcut(QKeySequence(Qt::Key_Escape));

    QMenu* view = menuBar()->addMenu(tr("&View"));
    const QString names[] = {tr("&RoPE Contribution"), tr("S&pectra"), tr("Pre&view"), tr("Sanit&y Check"), tr("&Heal")};
    for (int t = 0; t < 5; ++t) {
        QAction* a = view->addAction(names[t], this, [this, t] { showTab(t); });
        a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + t)));
    }
    view->addSeparator();
    view->addAction(m_modelDock->toggleViewAction());
    view->addAction(m_settingsDock->toggleViewAction());
    QAction* explain = m_explainerDock->toggleViewAction();
    explain->setShortcut(QKeySequence(Qt::Key_F1));
    view->addAction(explain);
    view->addSeparator();
    m_resetLayout = view->addAction(tr("Reset &Layout"), this, &MainWindow::resetLayout);
    m_resetLayout->setStatusTip(tr("Put the panels back where they start and fit the window to the screen"));

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    m_guideAction = help->addAction(tr("&User Guide"), this, [this] {
        auto* guide = new UserGuideDialog(this);
        guide->setAttribute(Qt::WA_DeleteOnClose);
        guide->show();
    });
    help->addSeparator();
    help->addAction(tr("&About MLA Workbench"), this, &MainWindow::about);
    help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt);
    updateRecentMenu();
}

QList<QAction*> MainWindow::workbenchActions() const
{
    QList<QAction*> out;
    for (QAction* menu : menuBar()->actions()) {
        if (menu->menu()) {
            for (QAction* a : menu->menu()->actions()) {
                if (!a->isSeparator() && !a->menu())
                    out.append(a);
            }
        }
    }
    return out;
}

QMessageBox* MainWindow::errorDialog() const
{
    return m_errorBox.data();
}

QList<PlotWidget*> MainWindow::plots() const
{
    return findChildren<PlotWidget*>();
}

QSize MainWindow::defaultSize() const
{
    // 1500 x 920 where the screen has room, else what it has (the layout works from 1280 x 720 up).
    const QScreen* screen = this->screen() ? this->screen() : QGuiApplication::primaryScreen();
    const QRect available = screen ? screen->availableGeometry() : QRect(0, 0, 1500, 920);
    return {std::min(1500, available.width()), std::min(920, available.height())};
}

bool MainWindow::geometryFitsAScreen(const QRect& frame)
{
    // Saved on another monitor set-up, the window could open off every screen: then the saved geometry is not used.
    for (const QScreen* s : QGuiApplication::screens()) {
        const QRect a = s->availableGeometry();
        const QRect seen = a.intersected(frame);
        if (seen.width() >= std::min(200, frame.width()) && seen.height() >= std::min(100, frame.height()))
            return true;
    }
    return QGuiApplication::screens().isEmpty();
}

void MainWindow::resetLayout()
{
    if (!m_defaultLayout.isEmpty())
        QMainWindow::restoreState(m_defaultLayout);
    for (QDockWidget* d : {m_modelDock, m_settingsDock, m_explainerDock}) {
        d->setFloating(false);
        d->show();
    }
    resizeDocks({m_modelDock, m_explainerDock}, {350, 310}, Qt::Horizontal);
    resizeDocks({m_modelDock, m_settingsDock}, {300, 520}, Qt::Vertical);
    if (!isMaximized() && !isFullScreen())
        resize(defaultSize());
}

void MainWindow::restoreState()
{
    QSettings settings;
    m_defaultLayout = QMainWindow::saveState(); // the docks as build() placed them: what Reset Layout returns to
    if (!m_options.restoreSettings) {
        resize(defaultSize());
        return;
    }
    if (!restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray()) || !geometryFitsAScreen(frameGeometry())) {
        setWindowState(Qt::WindowNoState);
        resize(defaultSize());
        if (const QScreen* screen = QGuiApplication::primaryScreen())
            move(screen->availableGeometry().center() - rect().center());
    } else if (const QScreen* screen = QGuiApplication::screenAt(frameGeometry().center()) ? QGuiApplication::screenAt(frameGeometry().center()) : this->screen()) {
        // Larger than the screen it is on (saved on a bigger one): shrunk to fit.
        const QRect a = screen->availableGeometry();
        if (width() > a.width() || height() > a.height())
            resize(std::min(width(), a.width()), std::min(height(), a.height()));
    }
    QMainWindow::restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
    Settings snapshot = m_workbench->snapshot();
    settingsFromVariant(settings.value(QStringLiteral("settings/last")).toMap(), snapshot);
    m_workbench->applySnapshot(snapshot);
    m_workbench->setContextLength(settings.value(QStringLiteral("memory/context"), 4096).toLongLong());
    m_workbench->setBatchSize(settings.value(QStringLiteral("memory/batch"), 1).toLongLong());
    CacheFormat format;
    if (parseCacheFormat(settings.value(QStringLiteral("memory/format"), QStringLiteral("bf16")).toString().toStdString(), format))
        m_workbench->setCacheFormat(format);
    m_tabs->setCurrentIndex(settings.value(QStringLiteral("window/tab"), 0).toInt());
}

void MainWindow::saveState() const
{
    if (!m_options.restoreSettings)
        return;
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), QMainWindow::saveState());
    settings.setValue(QStringLiteral("window/tab"), m_tabs->currentIndex());
    settings.setValue(QStringLiteral("settings/last"), settingsToVariant(m_workbench->snapshot()));
    settings.setValue(QStringLiteral("memory/context"), static_cast<qlonglong>(m_workbench->contextLength()));
    settings.setValue(QStringLiteral("memory/batch"), static_cast<qlonglong>(m_workbench->batchSize()));
    settings.setValue(QStringLiteral("memory/format"), QString::fromUtf8(cacheFormatName(m_workbench->cacheFormat()).data()));
}

void MainWindow::closeEvent(QCloseEvent* event)
{
    if (!confirmDiscard(tr("quitting"))) {
        m_closeAfterSave = m_workbench->isBusy(); // a save started: close once it is written
        event->ignore();
        return;
    }
    saveState();
    m_workbench->cancel();
    QMainWindow::closeEvent(event);
}

void MainWindow::updateTitle()
{
    const QString name = m_workbench->modelName();
    setWindowTitle(name.isEmpty() ? tr("MLA Workbench") : tr("MLA Workbench \u2014 %1").arg(name));
}

void MainWindow::updateActions()
{
    const bool busy = m_workbench->isBusy();
    m_analyze->setEnabled(m_workbench->hasModel() && !busy);
    m_convert->setEnabled(m_workbench->hasModel() && !busy && m_workbench->preview().problem.empty());
    m_check->setEnabled(m_workbench->conversion().has_value() && !busy);
    const QString noHeal = m_workbench->healUnavailableReason();
    m_healAction->setEnabled(m_workbench->conversion().has_value() && noHeal.isEmpty());
    m_healAction->setStatusTip(noHeal.isEmpty() ? tr("Heal the converted model by block-wise distillation (the Heal tab: steps, tokens, learning rate)")
                                                : noHeal);
    m_healAction->setToolTip(m_healAction->statusTip());
    m_export->setStatusTip(m_workbench->conversionIsDeepSeek()
                               ? tr("Write the converted model as a Hugging Face folder in the DeepSeek-V3 layout (DeepseekV3ForCausalLM)")
                               : tr("Write the converted model as a Hugging Face folder in the MHA2MLA layout"));
    m_exportGguf->setEnabled(m_workbench->hasModel() && !busy);
    m_recoverAction->setEnabled(m_workbench->hasModel() && !busy);
    m_export->setEnabled(m_workbench->conversion().has_value() && !busy);
    m_saveSession->setEnabled(m_workbench->analysis() != nullptr && !busy);
}

void MainWindow::showTab(int tab)
{
    if (tab >= 0 && tab < m_tabs->count())
        m_tabs->setCurrentIndex(tab);
}

// ---------------------------------------------------------------------------------------------------- opening

void MainWindow::openSessionWithModel(const QString& session, const QString& model)
{
    m_pendingSession = session;
    m_workbench->openModel(model);
}

void MainWindow::onSessionOpened(const QString& path, const QString& modelMissing)
{
    addRecent(path);
    if (modelMissing.isEmpty())
        return;
    const auto found = pipeline::locateSessionModel(path.toStdString(), modelMissing.toStdString());
    if (!m_prompts) {
        statusBar()->showMessage(found ? tr("Session opened without its model; it is at %1").arg(QString::fromStdString(found->string()))
                                       : tr("Session opened without its model: %1 is not there").arg(modelMissing),
                                 10000);
        return;
    }
    if (found) {
        const QString model = QString::fromStdString(found->string());
        if (m_prompts->openSessionModel(this, model))
            openSessionWithModel(path, model);
        return;
    }
    const QString model = m_prompts->locateSessionModel(this, modelMissing, QFileInfo(path).absolutePath());
    if (!model.isEmpty())
        openSessionWithModel(path, model);
}

bool MainWindow::confirmDiscard(const QString& action)
{
    if (!m_prompts || !m_workbench->hasUnsavedWork())
        return true;
    switch (m_prompts->unsavedWork(this, action)) {
    case UserPrompts::UnsavedAnswer::Discard:
        return true;
    case UserPrompts::UnsavedAnswer::Save:
        saveSessionDialog(); // goes on once it is written (sessionSaved), or stays when it is not
        return false;
    case UserPrompts::UnsavedAnswer::Cancel:
        return false;
    }
    return false;
}

void MainWindow::setPrompts(std::unique_ptr<UserPrompts> prompts)
{
    m_prompts = std::move(prompts);
}

void MainWindow::openPath(const QString& path)
{
    if (!confirmDiscard(tr("opening %1").arg(QFileInfo(path).fileName()))) {
        if (m_workbench->isBusy()) // a save started: open once it is written
            m_openAfterSave = path;
        return;
    }
    if (isSessionFile(path))
        m_workbench->openSession(path);
    else
        m_workbench->openModel(path);
}

void MainWindow::openDemo()
{
    try {
        const std::filesystem::path demo = findDemoModel(MLA_DEMO_INSTALL_DIR, MLA_DEMO_BUILD_DIR);
        openPath(QString::fromStdString(demo.string()));
    } catch (const Error& e) {
        showError(tr("Cannot open the demo model"), QString::fromUtf8(e.what()));
    }
}

void MainWindow::openFileDialog()
{
    QSettings settings;
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Checkpoint"), settings.value(QStringLiteral("open/lastDir")).toString(),
                                                      tr("Checkpoints (*.safetensors *.bin *.gguf *.json);;Sessions (*.h5);;All files (*)"));
    if (path.isEmpty())
        return;
    settings.setValue(QStringLiteral("open/lastDir"), QFileInfo(path).absolutePath());
    openPath(path);
}

void MainWindow::openFolderDialog()
{
    QSettings settings;
    const QString path = QFileDialog::getExistingDirectory(this, tr("Open Model Folder"), settings.value(QStringLiteral("open/lastDir")).toString());
    if (path.isEmpty())
        return;
    settings.setValue(QStringLiteral("open/lastDir"), path);
    openPath(path);
}

void MainWindow::openSessionDialog()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Session"), QString(), tr("Sessions (*.h5);;All files (*)"));
    if (!path.isEmpty()) {
        if (!confirmDiscard(tr("opening %1").arg(QFileInfo(path).fileName()))) {
            if (m_workbench->isBusy())
                m_openAfterSave = path;
            return;
        }
        m_workbench->openSession(path);
    }
}

void MainWindow::saveSessionDialog()
{
    if (!m_workbench->analysis()) {
        showError(tr("Nothing to save"), tr("A session stores an analysis: run Analyze (F5) first."));
        return;
    }
    QString base = QFileInfo(m_workbench->modelName()).completeBaseName();
    if (base.isEmpty())
        base = QStringLiteral("session");
    QString path = m_prompts ? m_prompts->sessionFile(this, base + QStringLiteral(".h5"))
                             : QFileDialog::getSaveFileName(this, tr("Save Session"), base + QStringLiteral(".h5"), tr("Sessions (*.h5)"));
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().isEmpty())
        path += QStringLiteral(".h5");
    bool force = false;
    if (!confirmOutput(inspectOutputFile(path.toStdString(), pipeline::inputFiles(m_workbench->model()), FileKind{"an HDF5 session file", isHdf5File}),
                       path, &force))
        return;
    m_workbench->saveSession(path, force);
}

bool MainWindow::confirmOutput(const OutputCheck& check, const QString& path, bool* force)
{
    *force = false;
    if (check.verdict == OutputVerdict::Refused) {
        showError(tr("Cannot write here"), QStringLiteral("%1: %2").arg(path, QString::fromStdString(check.problem)));
        return false;
    }
    if (check.verdict != OutputVerdict::NeedsForce)
        return true;
    const auto answer = QMessageBox::question(this, tr("Replace?"),
                                              tr("%1 %2.\n\nReplace it? The new output is written beside it first and "
                                                 "swapped in only when complete.")
                                                  .arg(path, QString::fromStdString(check.problem)),
                                              QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
    *force = answer == QMessageBox::Yes;
    return *force;
}

void MainWindow::exportDialog()
{
    if (!m_workbench->conversion()) {
        showError(tr("Nothing to export"), tr("Convert the model first (Run > Convert)."));
        return;
    }
    // The folder to write is named here: a new one (typed, or made with the dialog's New Folder button) or an empty
    // one; the dialog proposes a new name beside the last export.
    QSettings settings;
    const QString base = QFileInfo(m_workbench->modelName()).completeBaseName() + QStringLiteral("-mla");
    const QString parent = settings.value(QStringLiteral("export/lastDir"), QDir::homePath()).toString();
    QString proposed = QDir(parent).filePath(base);
    for (int i = 2; QFileInfo::exists(proposed); ++i)
        proposed = QDir(parent).filePath(base + QStringLiteral("-%1").arg(i));
    QFileDialog dialog(this, tr("Export the converted model as a folder"), parent);
    dialog.setAcceptMode(QFileDialog::AcceptSave);
    dialog.setFileMode(QFileDialog::AnyFile);
    dialog.setOption(QFileDialog::DontConfirmOverwrite); // confirmOutput asks, with core's reason
    dialog.setLabelText(QFileDialog::Accept, tr("Export"));
    dialog.setLabelText(QFileDialog::FileName, tr("Folder name"));
    dialog.selectFile(QFileInfo(proposed).fileName());
    if (dialog.exec() != QDialog::Accepted || dialog.selectedFiles().isEmpty())
        return;
    const QString folder = dialog.selectedFiles().constFirst();
    settings.setValue(QStringLiteral("export/lastDir"), QFileInfo(folder).absolutePath());
    bool force = false;
    if (!confirmOutput(inspectOutputFolder(folder.toStdString(), pipeline::inputFiles(m_workbench->model())), folder, &force))
        return;
    m_workbench->exportTo(folder, force);
}

QString MainWindow::ggufExportDescription() const
{
    const auto& conversion = m_workbench->conversion();
    if (m_workbench->ggufExportsConversion()) {
        QString text = tr("Writes the <b>converted model</b> (DeepSeek-V3 target) as llama.cpp's <b>deepseek2</b> architecture, "
                          "with its latent cache: kv_lora_rank + qk_rope_head_dim values per token and layer.");
        if (!m_workbench->conversionMatchesSettings())
            text += tr(" It was made with earlier settings than the ones shown.");
        text += m_workbench->sanity() ? tr(" The sanity check's numbers go into its model card.")
                                      : tr(" Run the sanity check first to put its numbers into the model card.");
        return text;
    }
    QString text = tr("Writes the <b>opened model as it is</b> (llama.cpp's own architecture for it), to compare with a "
                      "converted one in the same engine.");
    if (conversion)
        text += tr(" The current conversion is in the MHA2MLA layout, which llama.cpp does not run: choose the <b>DeepSeek-V3 "
                   "layout</b> target (Settings) and Convert again to export the converted model for llama.cpp.");
    else
        text += tr(" To export a converted model for llama.cpp, choose the DeepSeek-V3 layout target (Settings) and Convert first.");
    return text;
}

void MainWindow::ggufExportDialog()
{
    if (!m_workbench->hasModel()) {
        showError(tr("Nothing to export"), tr("Open a model first (File > Open)."));
        return;
    }
    QSettings settings;
    const QFileInfo model(m_workbench->modelPath());
    QString dir = settings.value(QStringLiteral("export/ggufDir")).toString();
    if (dir.isEmpty() || !QFileInfo(dir).isDir())
        dir = model.absolutePath(); // beside the model file or folder (never inside an input folder: core refuses that)
    const QString base = model.isDir() ? model.fileName() : model.completeBaseName();
    const bool converted = m_workbench->ggufExportsConversion();
    const QString name = converted ? base + QStringLiteral("-deepseek2") : base;
    QString file = QDir(dir).filePath(name + QStringLiteral(".gguf"));
    if (QFileInfo(file) == model) // a GGUF model: never suggest writing over the input
        file = QDir(dir).filePath(name + QStringLiteral("-export.gguf"));
    GgufExportDialog dialog(ggufExportDescription(), file, name, this);
    if (dialog.exec() != QDialog::Accepted)
        return;
    const QString path = dialog.file();
    settings.setValue(QStringLiteral("export/ggufDir"), QFileInfo(path).absolutePath());
    bool force = false;
    if (!confirmOutput(inspectOutputFile(path.toStdString(), pipeline::inputFiles(m_workbench->model()), ggufFileKind()), path, &force))
        return;
    m_workbench->exportGgufTo(path, dialog.weights(), dialog.name(), force);
}

void MainWindow::recoverDialog()
{
    RecoveryDialog dialog(m_workbench->modelPath(), m_workbench->lastExportFolder(), this);
    if (dialog.exec() != QDialog::Accepted)
        return;
    pipeline::RecoveryRequest request = dialog.request();
    bool force = false;
    if (!confirmOutput(inspectOutputFolder(request.out, {request.teacher, request.student}),
                       QString::fromStdString(request.out.string()), &force))
        return;
    request.force = force;
    m_workbench->recoverExport(request);
}

void MainWindow::addRecent(const QString& path)
{
    if (!m_options.restoreSettings || path.isEmpty())
        return;
    QSettings settings;
    QStringList recent = settings.value(QStringLiteral("recentFiles")).toStringList();
    recent.removeAll(path);
    recent.prepend(path);
    while (recent.size() > kMaxRecent)
        recent.removeLast();
    settings.setValue(QStringLiteral("recentFiles"), recent);
    updateRecentMenu();
}

void MainWindow::updateRecentMenu()
{
    m_recentMenu->clear();
    const QStringList recent = QSettings().value(QStringLiteral("recentFiles")).toStringList();
    for (int i = 0; i < recent.size(); ++i) {
        QAction* a = m_recentMenu->addAction(QStringLiteral("&%1 %2").arg(i + 1).arg(QFileInfo(recent[i]).fileName()), this,
                                             [this, path = recent[i]] { openPath(path); });
        a->setStatusTip(recent[i]);
        a->setToolTip(recent[i]);
    }
    if (recent.isEmpty())
        m_recentMenu->addAction(tr("(none)"))->setEnabled(false);
    m_recentMenu->setEnabled(true);
}

// ---------------------------------------------------------------------------------------------------- drag and drop

void MainWindow::dragEnterEvent(QDragEnterEvent* event)
{
    const QList<QUrl> urls = event->mimeData()->urls();
    if (urls.size() == 1 && urls.front().isLocalFile() && canOpen(urls.front().toLocalFile()))
        event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event)
{
    const QList<QUrl> urls = event->mimeData()->urls();
    if (urls.size() == 1 && urls.front().isLocalFile()) {
        openPath(urls.front().toLocalFile());
        event->acceptProposedAction();
    }
}

// ---------------------------------------------------------------------------------------------------- messages

void MainWindow::showError(const QString& title, const QString& message)
{
    m_lastError = title + QStringLiteral(": ") + message;
    statusBar()->showMessage(m_lastError, 15000);
    if (!m_options.interactive)
        return;
    if (m_errorBox)
        m_errorBox->close();
    m_errorBox = new QMessageBox(QMessageBox::Critical, title, title, QMessageBox::Ok, this);
    m_errorBox->setInformativeText(message);
    m_errorBox->setAttribute(Qt::WA_DeleteOnClose);
    m_errorBox->open();
}

void MainWindow::about()
{
    QMessageBox::about(this, tr("About MLA Workbench"),
                       tr("<h3>MLA Workbench</h3><p>Converts multi-head and grouped-query attention models to Multi-head Latent "
                          "Attention: partial RoPE, a low-rank joint key/value latent and an absorbed cache that really "
                          "saves memory.</p><p>Method: MHA2MLA (Ji et al., 2025), TransMLA, DeepSeek-V2.</p>"));
}

} // namespace mla
