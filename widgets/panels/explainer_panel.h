#pragma once

#include <QHash>
#include <QWidget>

class QTextBrowser;

namespace mla {

class Workbench;

// "How it works": partial RoPE, the joint SVD, absorption and the cache formula, explained next to the live numbers
// of the open model and the current settings (for teaching). The text is a template in the resources; the numbers
// are refreshed on every settings change, in place (each one is a named anchor in the document), so a slider drag
// does not re-parse and re-lay out the whole page. showTopic() scrolls to a section (rope, svd, absorb, cache).
class ExplainerPanel : public QWidget {
    Q_OBJECT
public:
    explicit ExplainerPanel(Workbench* workbench, QWidget* parent = nullptr);

    QString html() const;
    QString text() const; // the page as plain text, live numbers included
    // The placeholder values of the current state (for tests).
    QHash<QString, QString> values() const;

public Q_SLOTS:
    void showTopic(const QString& topic);
    void refresh();

protected:
    void changeEvent(QEvent* event) override;

private:
    void rebuild(const QHash<QString, QString>& values);      // the whole document from the template
    void markValues(const QHash<QString, QString>& values);   // tags each value's run of text after rebuild()
    bool updateValues(const QHash<QString, QString>& values); // only the live numbers, in place; false if it cannot

    Workbench* m_workbench;
    QTextBrowser* m_browser = nullptr;
    QString m_template;
    QString m_topic;
    bool m_built = false; // the document holds the template with every value marked as an anchor
};

} // namespace mla
