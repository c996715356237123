#pragma once

#include <QMainWindow>
#include <QPointer>

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
    QPointer<QMessageBox> m_errorBox;
    QString m_lastError;
};

} // namespace mla
