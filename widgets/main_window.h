#pragma once

#include <QMainWindow>
#include <QPointer>

#include <memory>

class QAction;
class QDockWidget;
class QMenu;
class QMessageBox;
class QTabWidget;

namespace mla {

class ExplainerPanel;
class HealView;
class ModelPanel;
class PlotWidget;
class PreviewView;
class RopeView;
class RunBar;
class SanityView;
class SettingsPanel;
class SpectrumView;
class UserPrompts;
class Workbench;
struct OutputCheck;

// The workbench window: model panel and settings on the left, the RoPE heatmap, spectra, live preview and sanity
// check as tabs in the centre, "How it works" on the right, the run bar at the bottom. It wires menus, shortcuts,
// drag and drop, recent files, QSettings (geometry and last settings) and error dialogs around the Workbench.
class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    struct Options {
        bool restoreSettings = true; // read geometry and last settings from QSettings (and write them back on close)
        bool interactive = true;     // show error dialogs (off: errors go to the status bar and lastError())
    };
    explicit MainWindow(QWidget* parent = nullptr);
    explicit MainWindow(const Options& options, QWidget* parent = nullptr);
    ~MainWindow() override;

    Workbench* workbench() const { return m_workbench; }
    ModelPanel* modelPanel() const { return m_modelPanel; }
    SettingsPanel* settingsPanel() const { return m_settingsPanel; }
    RopeView* ropeView() const { return m_ropeView; }
    SpectrumView* spectrumView() const { return m_spectrumView; }
    PreviewView* previewView() const { return m_previewView; }
    SanityView* sanityView() const { return m_sanityView; }
    HealView* healView() const { return m_healView; }
    ExplainerPanel* explainer() const { return m_explainer; }
    RunBar* runBar() const { return m_runBar; }
    QTabWidget* tabs() const { return m_tabs; }
    QList<PlotWidget*> plots() const;
    QList<QAction*> workbenchActions() const; // every menu action (for tests of shortcuts)
    QAction* exportGgufAction() const { return m_exportGguf; }
    // What File > Export as GGUF writes now, in words (the dialog's first line).
    QString ggufExportDescription() const;

    // Last error shown (title: message), for tests and the self-test.
    QString lastError() const { return m_lastError; }
    QMessageBox* errorDialog() const;

    enum Tab { RopeTab, SpectraTab, PreviewTab, SanityTab, HealTab };

public Q_SLOTS:
    // A checkpoint (file or folder) or a session (*.h5).
    void openPath(const QString& path);
    void openDemo();
    void showTab(int tab);
    // View > Reset Layout: the docks where build() put them, the window at its default size for this screen.
    void resetLayout();
    // Opens `model`, then the session again on it (the session's analysis then belongs to the opened weights):
    // what "Open its model" / "Locate model…" do when a session was opened without its model.
    void openSessionWithModel(const QString& session, const QString& model);

public:
    // Asks to save the work a session would keep before it is replaced or the window closes (Save / Discard /
    // Cancel); true when it may go on. Never asks when the window is not interactive (tests, the self-test) unless
    // prompts were set.
    bool confirmDiscard(const QString& action);
    // Who answers the window's questions (user_prompts.h): an interactive window shows dialogs, one that is not asks
    // nobody; a test sets prompts that answer offscreen (asked then even when the window is not interactive).
    void setPrompts(std::unique_ptr<UserPrompts> prompts);
    QAction* resetLayoutAction() const { return m_resetLayout; }
    // Whether a window frame is on a screen enough to be used and no larger than it (saved geometry is checked so).
    static bool geometryFitsAScreen(const QRect& frame);
    QSize defaultSize() const;

protected:
    void closeEvent(QCloseEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void build();
    void buildMenus();
    void restoreState();
    void saveState() const;
    void updateTitle();
    void updateActions();
    void updateRecentMenu();
    void addRecent(const QString& path);
    void onSessionOpened(const QString& path, const QString& modelMissing);
    void showError(const QString& title, const QString& message);
    void openFileDialog();
    void openFolderDialog();
    void openSessionDialog();
    void saveSessionDialog();
    void exportDialog();
    void ggufExportDialog(); // File > Export as GGUF…: the dialog, the output check, then Workbench::exportGgufTo
    void recoverDialog(); // Run > Recover in PyTorch…: the dialog, then Workbench::recoverExport
    // Asks before an output replaces something (core's output policy says it needs force); false: do not write.
    bool confirmOutput(const OutputCheck& check, const QString& path, bool* force);
    void about();

    Options m_options;
    std::unique_ptr<UserPrompts> m_prompts; // null: nobody to ask (not interactive)
    Workbench* m_workbench = nullptr;
    QTabWidget* m_tabs = nullptr;
    ModelPanel* m_modelPanel = nullptr;
    SettingsPanel* m_settingsPanel = nullptr;
    RopeView* m_ropeView = nullptr;
    SpectrumView* m_spectrumView = nullptr;
    PreviewView* m_previewView = nullptr;
    SanityView* m_sanityView = nullptr;
    HealView* m_healView = nullptr;
    ExplainerPanel* m_explainer = nullptr;
    RunBar* m_runBar = nullptr;
    QDockWidget* m_modelDock = nullptr;
    QDockWidget* m_settingsDock = nullptr;
    QDockWidget* m_explainerDock = nullptr;
    QMenu* m_recentMenu = nullptr;
    QAction* m_saveSession = nullptr;
    QAction* m_openSession = nullptr;
    QAction* m_export = nullptr;
    QAction* m_exportGguf = nullptr;
    QAction* m_analyze = nullptr;
    QAction* m_convert = nullptr;
    QAction* m_check = nullptr;
    QAction* m_healAction = nullptr;
    QAction* m_recoverAction = nullptr;
    QAction* m_cancel = nullptr;
    QAction* m_guideAction = nullptr;
    QAction* m_resetLayout = nullptr;
    QByteArray m_defaultLayout;
    QPointer<QMessageBox> m_errorBox;
    QString m_lastError;
    QString m_pendingSession;  // reopened once the model opened for it is in (openSessionWithModel)
    QString m_openAfterSave;   // opened once the session saved at the unsaved-work prompt is written
    bool m_closeAfterSave = false;
};

} // namespace mla
