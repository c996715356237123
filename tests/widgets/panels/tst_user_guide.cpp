// Help > User Guide: the workflow, every control group, the command line that does the same, and links to the
// documents that exist (plain names where none are found).

#include "common/test_support.h"
#include "panels/user_guide.h"

#include <QTest>
#include <QFileInfo>
#include <QTextBrowser>
#include <QUrl>

using namespace mla;

class TestUserGuide : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void guideCoversTheWorkflowAndTheCli()
    {
        const QString docs = QString::fromStdString((test::sourceDir().parent_path() / "docs").string());
        const QString html = UserGuideDialog::html(docs);
        for (const char* text : {"Analyze</b> (F5)", "Convert</b> (Ctrl+R)", "Heal</b>", "Export</b> (Ctrl+E)", "Save Session</b>",
                                 "Preset</b>", "Target</b>", "Allocate now</b>", "Calibration</b>", "mla-workbench-cli analyze",
                                 "mla-workbench-cli convert", "--session", "--format gguf"})
            QVERIFY2(html.contains(QString::fromUtf8(text)), text);
        // Every document named is linked, and each link names a file that exists.
        int links = 0;
        for (qsizetype at = html.indexOf(QStringLiteral("href=\"")); at >= 0; at = html.indexOf(QStringLiteral("href=\""), at + 1)) {
            const qsizetype end = html.indexOf(QLatin1Char('"'), at + 6);
            const QUrl url(html.mid(at + 6, end - at - 6));
            QVERIFY2(url.isLocalFile() && QFileInfo::exists(url.toLocalFile()), qPrintable(url.toString()));
            ++links;
        }
        QCOMPARE(links, 9);
        // Without the documents the names stay, as plain text.
        const QString plain = UserGuideDialog::html(QString());
        QVERIFY(!plain.contains(QStringLiteral("href=")));
        QVERIFY(plain.contains(QStringLiteral("docs/gui.md")));
    }

    void dialogShowsIt()
    {
        UserGuideDialog d;
        QVERIFY(d.browser()->toPlainText().contains(QStringLiteral("The workflow")));
        QVERIFY(!UserGuideDialog::docsDir().isEmpty()); // the source tree's docs, in a build tree
    }
};

QTEST_MAIN(TestUserGuide)
#include "tst_user_guide.moc"
