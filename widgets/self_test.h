#pragma once

#include <QString>
#include <QStringList>

class QWidget;

#include <functional>

namespace mla {

class MainWindow;

// `mla-workbench --self-test`: drives a real window like a user would — opens the demo model, rejects a broken
// checkpoint with core's message, analyses, cancels, moves every settings control (checking the live preview after
// each move), undoes and redoes, exercises every panel and plot, converts, runs the sanity check, heals (stopped
// keeping layers, stopped discarding, then a tiny full heal checked against the unhealed model), exports the model
// and every plot in every format, saves and reopens a session, exports the opened model as GGUF and reloads it, then
// converts to the DeepSeek-V3 target (every view, the check, the folder and GGUF exports, heal refused, its session)
// — and reports each step. run() returns 0 only when every step passed.
class SelfTest {
public:
    SelfTest(MainWindow* window, QString scratchDir);

    int run();
    // The tour's screenshots as indexed PNGs of at most 256 colours (reduceColours, as docs/images holds them)
    // instead of full colour.
    void setTourIndexed(bool indexed) { m_tourIndexed = indexed; }
    const QStringList& failures() const { return m_failures; }

    // Processes events until `done` holds or `timeoutMs` passes; false on timeout.
    static bool waitUntil(const std::function<bool()>& done, int timeoutMs);

    // How long any one job of a step may take before the step fails.
    static constexpr int kJobTimeoutMs = 10 * 60 * 1000;
    // One line of the report, on stdout at once.
    static void say(const QString& line);
    // Visible widgets with a layout given less room than their minimum size hint (squeezed, so their content is cut
    // off), as "Class (name) WxH < WxH"; empty when none.
    static QStringList squeezedWidgets(QWidget* root);
    // Runs the pending layout passes (and the ones they post) so that sizes are final.
    static void settleLayouts();

private:
    void step(const QString& name, const std::function<void()>& body);
    void check(bool condition, const QString& what);

    void openDemo();
    void rejectBrokenCheckpoint();
    void analyze();
    void cancelAnalysis();
    void moveControls();
    void undoRedo();
    void ropeView();
    void spectrumView();
    void previewView();
    void explainer();
    void convertAndCheck();
    void heal();
    void exportPlots();
    void exportModel();
    void recover();
    void sessions();
    void exportGguf();
    void deepSeekTarget();
    void tour(); // every tab at 1280x720 and 1920x1080: screenshots under the build folder, nothing squeezed

    MainWindow* m_window;
    QString m_dir;
    QStringList m_failures;
    QStringList m_stepFailures;
    int m_steps = 0;
    bool m_tourIndexed = false;
};

// `mla-workbench --screenshot FILE`: opens `model` (the demo when empty), analyses it, shows `tab` and saves the
// window as PNG. Returns 0 on success.
int takeScreenshot(MainWindow* window, const QString& model, const QString& path, int tab);

} // namespace mla
