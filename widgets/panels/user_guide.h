#pragma once

#include <QDialog>
#include <QString>

class QTextBrowser;

namespace mla {

// Help > User Guide: what each control does, the workflow from opening a model to exporting it, the command line that
// does the same, and links to the documents (docs/*.md) where the installation or the source tree has them.
class UserGuideDialog : public QDialog {
    Q_OBJECT
public:
    explicit UserGuideDialog(QWidget* parent = nullptr);

    // The guide as HTML; links point at `docsDir`'s documents when it names a folder that has them (else their names
    // are plain text).
    static QString html(const QString& docsDir);
    // Where the documents are: the installed ones, else the source tree's (empty when neither exists).
    static QString docsDir();

    QTextBrowser* browser() const { return m_browser; }

private:
    QTextBrowser* m_browser = nullptr;
};

} // namespace mla
