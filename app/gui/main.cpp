// mla-workbench: the desktop workbench.
//
//   mla-workbench [MODEL_OR_SESSION]                 opens the bundled demo model when no path is given
//   mla-workbench --self-test [--tour-indexed]       drives the window end to end, exits 0 only if every step passed
//   mla-workbench --screenshot FILE [--tab T] [--size WxH] [MODEL]
//                                                    analyses the model (the demo by default) and saves the window

#include "app_icon.h"
#include "main_window.h"
#include "self_test.h"
#include "util/version.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QElapsedTimer>
#include <QRegularExpression>
#include <QSettings>
#include <QTemporaryDir>
#include <QTimer>

#include <cstdio>
#include <cstring>
#include <iostream>

namespace {

constexpr const char* kUsage =
    "Usage: mla-workbench [options] [MODEL]\n"
    "\n"
    "The MLA Workbench window. MODEL is a Hugging Face folder, a .safetensors, llama2.c .bin or .gguf checkpoint, or a\n"
    "saved session (.h5); without it the bundled demo model (stories260K) opens.\n"
    "\n"
    "Options:\n"
    "  --self-test              open the demo model, analyse, move every control, convert, check, export every plot\n"
    "                           and the model, save and reopen a session; exit 0 only if every step passed\n"
    "  --screenshot FILE        analyse MODEL (or the demo), save the window as PNG to FILE and exit\n"
    "  --tab TAB                with --screenshot: rope, spectra, preview or sanity (default preview)\n"
    "  --size WxH               with --screenshot: the window size (default 1600x1000)\n"
    "  --version                print the version and exit\n"
    "  -h, --help               print this help and exit\n"
    "\n"
    "Qt options such as -style Fusion or -platform offscreen are accepted too.\n";

int usageError(const QString& message)
{
    std::fprintf(stderr, "mla-workbench: %s\n%s", message.toLocal8Bit().constData(), kUsage);
    return 2;
}

int parseTab(const QString& text, bool* ok)
{
    const QStringList names = {QStringLiteral("rope"), QStringLiteral("spectra"), QStringLiteral("preview"), QStringLiteral("sanity")};
    const int byName = static_cast<int>(names.indexOf(text.toLower()));
    if (byName >= 0) {
        *ok = true;
        return byName;
    }
    const int byNumber = text.toInt(ok);
    *ok = *ok && byNumber >= 0 && byNumber < names.size();
    return byNumber;
}

} // namespace

int main(int argc, char** argv)
{
    // Answered before Qt starts, so they work without a display.
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--version") == 0) {
            std::cout << "mla-workbench " << mla::kVersion << "\n";
            return 0;
        }
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::cout << kUsage;
            return 0;
        }
    }

    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("MLA Workbench"));
    QApplication::setOrganizationName(QStringLiteral("mla-workbench"));
    QApplication::setOrganizationDomain(QStringLiteral("mlaworkbench.org"));
    QApplication::setApplicationVersion(QString::fromLatin1(mla::kVersion));
    QGuiApplication::setDesktopFileName(QStringLiteral("org.mlaworkbench.MlaWorkbench"));
    QApplication::setWindowIcon(mla::appIcon());

    QCommandLineParser parser;
    const QCommandLineOption selfTest(QStringLiteral("self-test"));
    const QCommandLineOption screenshot(QStringLiteral("screenshot"), QString(), QStringLiteral("FILE"));
    const QCommandLineOption tab(QStringLiteral("tab"), QString(), QStringLiteral("TAB"), QStringLiteral("preview"));
    const QCommandLineOption size(QStringLiteral("size"), QString(), QStringLiteral("WxH"), QStringLiteral("1600x1000"));
    const QCommandLineOption tourIndexed(QStringLiteral("tour-indexed"));
    parser.addOptions({selfTest, screenshot, tab, size, tourIndexed});
    parser.addPositionalArgument(QStringLiteral("model"), QString());
    if (!parser.parse(QApplication::arguments()))
        return usageError(parser.errorText());
    const QStringList positional = parser.positionalArguments();
    if (positional.size() > 1)
        return usageError(QStringLiteral("one model at a time (got %1 paths)").arg(positional.size()));
    const QString model = positional.value(0);

    if (parser.isSet(tourIndexed) && !parser.isSet(selfTest))
        return usageError(QStringLiteral("--tour-indexed goes with --self-test"));
    if (parser.isSet(selfTest)) {
        if (!model.isEmpty() || parser.isSet(screenshot))
            return usageError(QStringLiteral("--self-test takes no model and no --screenshot"));
        // Nothing of the user's is read or written: settings go to a scratch folder removed on exit.
        QTemporaryDir scratch;
        if (!scratch.isValid()) {
            std::fprintf(stderr, "mla-workbench: cannot create a temporary folder: %s\n", scratch.errorString().toLocal8Bit().constData());
            return 1;
        }
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, scratch.filePath(QStringLiteral("settings")));
        QElapsedTimer timer;
        timer.start();
        mla::MainWindow window(mla::MainWindow::Options{false, false});
        window.resize(1400, 900);
        window.show();
        mla::SelfTest test(&window, scratch.path());
        test.setTourIndexed(parser.isSet(tourIndexed));
        const int rc = test.run();
        std::printf("self-test: %.1f s\n", static_cast<double>(timer.elapsed()) / 1000.0);
        return rc;
    }

    if (parser.isSet(screenshot)) {
        bool ok = false;
        const int tabIndex = parseTab(parser.value(tab), &ok);
        if (!ok)
            return usageError(QStringLiteral("--tab: \"%1\" is not rope, spectra, preview or sanity").arg(parser.value(tab)));
        static const QRegularExpression sizePattern(QStringLiteral("^(\\d{3,5})x(\\d{3,5})$"));
        const QRegularExpressionMatch m = sizePattern.match(parser.value(size));
        if (!m.hasMatch())
            return usageError(QStringLiteral("--size: \"%1\" is not WIDTHxHEIGHT (e.g. 1600x1000)").arg(parser.value(size)));
        mla::MainWindow window(mla::MainWindow::Options{false, false});
        window.resize(m.captured(1).toInt(), m.captured(2).toInt());
        window.show();
        return mla::takeScreenshot(&window, model, parser.value(screenshot), tabIndex);
    }

    mla::MainWindow window;
    window.show();
    // Opened once the event loop runs, so that the window appears at once and the load reports through it.
    QTimer::singleShot(0, &window, [&window, model] {
        if (model.isEmpty())
            window.openDemo();
        else
            window.openPath(model);
    });
    return QApplication::exec();
}
