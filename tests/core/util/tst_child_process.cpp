// Running another program from core (util/child_process.h): lines as they come, exit codes and signals, the end of
// standard error, a clear error for a program that cannot start, and a cancel that stops the whole process group.
#include "util/child_process.h"

#include <QtTest>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include <unistd.h>

using namespace mla;

class TestChildProcess : public QObject {
    Q_OBJECT
private slots:
    void linesArriveInOrderWithExitCode();
    void standardErrorTailAndSignal();
    void programThatCannotStartIsAnError();
    void cancelStopsTheWholeGroup();
    void shellCommandLineQuotesForTheShell();
};

void TestChildProcess::linesArriveInOrderWithExitCode()
{
    std::vector<std::string> lines;
    ChildProcessRequest r;
    // A last line without a newline, a blank line, a CR-LF line, and a variable from the request's environment.
    r.argv = {"sh", "-c", "printf 'one\\n\\ntwo\\r\\n'; echo \"$MLA_CHILD_TEST\"; printf 'last'; exit 3"};
    r.setEnvironment = {{"MLA_CHILD_TEST", "from the request"}};
    const ChildProcessResult result = runChildProcess(r, [&](const std::string& l) { lines.push_back(l); }, JobControl());
    QCOMPARE(result.exitCode, 3);
    QCOMPARE(result.signal, 0);
    const std::vector<std::string> expected = {"one", "", "two", "from the request", "last"};
    QCOMPARE(lines, expected);
    QCOMPARE(result.lastLine, std::string("last"));

    // Much more output than a pipe holds, on both streams at once: nothing blocks, nothing is lost.
    r.argv = {"sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done"};
    r.setEnvironment.clear();
    std::size_t count = 0;
    const ChildProcessResult many = runChildProcess(r, [&](const std::string&) { ++count; }, JobControl());
    QCOMPARE(many.exitCode, 0);
    QCOMPARE(count, std::size_t(20000));
    QCOMPARE(many.lastLine, std::string("line19999"));
    QVERIFY(many.errorTail.size() <= 8192);
    QVERIFY(many.errorTail.find("err19999") != std::string::npos);
}

void TestChildProcess::standardErrorTailAndSignal()
{
    ChildProcessRequest r;
    r.argv = {"sh", "-c", "echo 'it went wrong' >&2; kill -TERM $$"};
    const ChildProcessResult result = runChildProcess(r, {}, JobControl());
    QCOMPARE(result.signal, SIGTERM);
    QCOMPARE(result.exitCode, -1);
    QVERIFY(result.errorTail.find("it went wrong") != std::string::npos);
}

void TestChildProcess::programThatCannotStartIsAnError()
{
    ChildProcessRequest r;
    r.argv = {"mla-no-such-program-anywhere"};
    try {
        runChildProcess(r, {}, JobControl());
        QFAIL("a missing program ran");
    } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find("mla-no-such-program-anywhere") != std::string::npos, e.what());
    }
    QVERIFY(findProgram("mla-no-such-program-anywhere").empty());
    QVERIFY(!findProgram("sh").empty());

    // A working directory that does not exist: the child cannot start, and says which errno.
    r.argv = {"sh", "-c", "true"};
    r.workingDirectory = "/nonexistent/mla-child-test";
    QVERIFY_EXCEPTION_THROWN(runChildProcess(r, {}, JobControl()), Error);
}

void TestChildProcess::cancelStopsTheWholeGroup()
{
    // The child starts a grandchild that would outlive it and writes its pid; a cancel must stop both, quickly.
    const std::string pidFile = QDir::temp().filePath("mla_child_test_%1.pid").arg(::getpid()).toStdString();
    ChildProcessRequest r;
    r.argv = {"sh", "-c", "sleep 60 & echo $! > '" + pidFile + "'; echo started; wait"};
    std::atomic<bool> cancel{false};
    const JobControl job(&cancel, {});
    const auto started = std::chrono::steady_clock::now();
    bool cancelled = false;
    try {
        runChildProcess(r, [&](const std::string& line) { if (line == "started") cancel = true; }, job);
    } catch (const Cancelled&) {
        cancelled = true;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    QVERIFY(cancelled);
    QVERIFY2(seconds < 10.0, qPrintable(QString::number(seconds)));
    QFile f(QString::fromStdString(pidFile));
    QVERIFY(f.open(QIODevice::ReadOnly));
    const pid_t grandchild = static_cast<pid_t>(f.readAll().trimmed().toLongLong());
    f.remove();
    QVERIFY(grandchild > 0);
    // Signalled and gone (its parent, reaped by us, is gone too: init reaps it); allow a moment for the reaping.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
        gone = ::kill(grandchild, 0) != 0;
        if (!gone) {
            QFile status(QString("/proc/%1/stat").arg(grandchild));
            gone = status.open(QIODevice::ReadOnly) && status.readAll().contains(") Z "); // a zombie is stopped
        }
        if (!gone)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    QVERIFY2(gone, "the grandchild survived the cancel");
}

void TestChildProcess::shellCommandLineQuotesForTheShell()
{
    const std::vector<std::string> argv = {"printf", "%s|", "plain", "with space", "it's", "", "$HOME", "a\"b"};
    const std::string line = shellCommandLine(argv);
    QCOMPARE(line.substr(0, 7), std::string("printf "));
    // The shell reads the line back into the same arguments.
    std::string out;
    ChildProcessRequest r;
    r.argv = {"sh", "-c", line};
    const ChildProcessResult result = runChildProcess(r, [&](const std::string& l) { out += l; }, JobControl());
    QCOMPARE(result.exitCode, 0);
    QCOMPARE(out, std::string("plain|with space|it's||$HOME|a\"b|"));
}

QTEST_GUILESS_MAIN(TestChildProcess)
#include "tst_child_process.moc"
