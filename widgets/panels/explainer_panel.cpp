#include "panels/explainer_panel.h"

#include "document/formatting.h"
#include "document/workbench.h"
#include "palette_colours.h"
#include "view_data/view_data.h"

#include <QEvent>
#include <QFile>
#include <QRegularExpression>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextBrowser>
#include <QTextCursor>
#include <QTextDocument>
#include <QVBoxLayout>

// The help pages are compiled into the static mla_widgets library: its resource initialiser is only linked in
// when something references it, so register it explicitly (Q_INIT_RESOURCE must be called outside a namespace).
static void initWorkbenchResources()
{
    Q_INIT_RESOURCE(workbench);
}

namespace mla {

ExplainerPanel::ExplainerPanel(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_browser = new QTextBrowser(this);
    m_browser->setOpenLinks(false);
    m_browser->setFrameShape(QFrame::NoFrame);
    // Lines break between words only; the panel never gets so narrow that a word has no room (about 26 characters).
    m_browser->setWordWrapMode(QTextOption::WordWrap);
    setMinimumWidth(fontMetrics().averageCharWidth() * 26 + 24);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_browser);
    initWorkbenchResources();
    QFile f(QStringLiteral(":/mla/help/how_it_works.html"));
    if (f.open(QIODevice::ReadOnly))
        m_template = QString::fromUtf8(f.readAll());
    else
        qWarning("ExplainerPanel: the help page :/mla/help/how_it_works.html is missing from the resources");
    for (auto signal : {&Workbench::modelChanged, &Workbench::previewChanged, &Workbench::memoryParametersChanged})
        connect(m_workbench, signal, this, &ExplainerPanel::refresh);
    refresh();
}

QHash<QString, QString> ExplainerPanel::values() const
{
    QHash<QString, QString> v;
    const QString dash = QStringLiteral("\u2014");
    const ModelConfig* c = m_workbench->config();
    const ConversionSettings& s = m_workbench->settings();
    v[QStringLiteral("model")] = c ? m_workbench->modelName() : tr("your model");
    v[QStringLiteral("strategy")] = QString::fromUtf8(ropeStrategyName(s.strategy).data());
    v[QStringLiteral("method")] = QString::fromUtf8(latentMethodName(s.method).data());
    const QStringList keys = {QStringLiteral("pairs_total"), QStringLiteral("d_h"), QStringLiteral("theta"), QStringLiteral("wave_first"),
                              QStringLiteral("wave_last"), QStringLiteral("p"), QStringLiteral("r"), QStringLiteral("nope"),
                              QStringLiteral("m_rows"), QStringLiteral("d"), QStringLiteral("d_c"), QStringLiteral("d_kv"),
                              QStringLiteral("error"), QStringLiteral("n_kv"), QStringLiteral("kv_before"), QStringLiteral("kv_after"),
                              QStringLiteral("saving"), QStringLiteral("layers"), QStringLiteral("context"), QStringLiteral("bytes_before"),
                              QStringLiteral("bytes_after")};
    for (const QString& k : keys)
        v[k] = dash;
    if (!c)
        return v;
    const std::int64_t p = m_workbench->resolvedRopePairs();
    const std::int64_t r = 2 * p;
    const std::int64_t latent = m_workbench->resolvedLatent();
    const auto freqs = view::pairFrequencies(*c);
    v[QStringLiteral("pairs_total")] = QString::number(c->pairsPerHead());
    v[QStringLiteral("d_h")] = QString::number(c->headDim);
    v[QStringLiteral("theta")] = QString::number(c->rope.theta, 'g', 8);
    if (!freqs.empty()) {
        v[QStringLiteral("wave_first")] = QString::number(freqs.front().wavelength, 'g', 3);
        v[QStringLiteral("wave_last")] = fmt::integer(static_cast<std::int64_t>(freqs.back().wavelength));
    }
    v[QStringLiteral("p")] = QString::number(p);
    v[QStringLiteral("r")] = QString::number(r);
    v[QStringLiteral("nope")] = QString::number(c->headDim - r);
    v[QStringLiteral("m_rows")] = QString::number(c->kvHeads * (c->headDim - r) + c->kvDim());
    v[QStringLiteral("d")] = QString::number(c->hidden);
    v[QStringLiteral("n_kv")] = QString::number(c->kvHeads);
    v[QStringLiteral("layers")] = QString::number(c->layers);
    v[QStringLiteral("kv_before")] = QString::number(2 * c->kvDim());
    if (s.method != LatentMethod::None) {
        v[QStringLiteral("d_c")] = QString::number(latent);
        v[QStringLiteral("d_kv")] = fmt::perHead(latent, c->kvHeads);
    } else {
        v[QStringLiteral("d_c")] = tr("(none)");
    }
    const ConversionPreview& preview = m_workbench->preview();
    if (preview.problem.empty() && !preview.layers.empty()) {
        v[QStringLiteral("kv_after")] = QString::number(preview.layers.front().kvConverted);
        v[QStringLiteral("saving")] = fmt::percent(preview.kv.saving());
        const std::int64_t context = m_workbench->contextLength();
        v[QStringLiteral("context")] = fmt::integer(context);
        v[QStringLiteral("bytes_before")] = fmt::bytes(preview.kv.originalCacheBytes(context, 1, CacheFormat::BF16));
        v[QStringLiteral("bytes_after")] = fmt::bytes(preview.kv.convertedCacheBytes(context, 1, CacheFormat::BF16));
        v[QStringLiteral("error")] = m_workbench->previewHasErrors() ? fmt::error(preview.meanWeightError) : tr("(run Analyze)");
    }
    if (m_workbench->deepSeekTarget()) {
        // One rotated key head shared by every query head: every KV head's whole key (and value) goes into the latent,
        // and there is no closed-form error for this layout.
        v[QStringLiteral("nope")] = QString::number(c->headDim);
        v[QStringLiteral("m_rows")] = QString::number(2 * c->kvDim());
        v[QStringLiteral("d_kv")] = dash;
        if (preview.problem.empty() && !preview.layers.empty())
            v[QStringLiteral("error")] = tr("(measured by the conversion)");
    }
    return v;
}

namespace {

const QString kValueAnchor = QStringLiteral("mla-value:");
constexpr int kValueProperty = QTextFormat::UserProperty + 1; // the placeholder a run of text shows

} // namespace

void ExplainerPanel::refresh()
{
    const auto v = values();
    if (!m_built || !updateValues(v))
        rebuild(v);
}

void ExplainerPanel::rebuild(const QHash<QString, QString>& v)
{
    static const QRegularExpression placeholder(QStringLiteral("%\\{([a-z_]+)\\}"));
    QString out;
    qsizetype last = 0;
    for (auto it = placeholder.globalMatch(m_template); it.hasNext();) {
        const auto m = it.next();
        out += m_template.mid(last, m.capturedStart() - last);
        // A named anchor (no href: not a link) marks the value so that updateValues() can find and replace it.
        out += QStringLiteral("<a name=\"%1%2\">%3</a>")
                   .arg(kValueAnchor, m.captured(1), v.value(m.captured(1), QStringLiteral("?")).toHtmlEscaped());
        last = m.capturedEnd();
    }
    out += m_template.mid(last);
    const QColor live = palette().color(QPalette::Link);
    const QString css = QStringLiteral("<style>.live { color: %1; font-weight: bold; } .formula { margin-left: 12px; font-style: italic; } "
                                       ".note { color: %2; } h3 { margin-top: 14px; }</style>")
                            .arg(live.name(), secondaryText(palette()).name()); // the placeholder colour as it shows (it may be translucent)
    const int scroll = m_browser->verticalScrollBar()->value();
    m_browser->setHtml(css + out);
    m_browser->document()->setUndoRedoEnabled(false);
    m_built = !m_template.isEmpty();
    if (m_built)
        markValues(v);
    m_browser->verticalScrollBar()->setValue(scroll);
}

void ExplainerPanel::markValues(const QHash<QString, QString>& v)
{
    // The HTML importer puts a named anchor on the first character only; the run of each value is marked in full with
    // a format property, which insertText() keeps when the value is replaced.
    struct Start {
        QString key;
        int position;
    };
    QList<Start> starts;
    QTextDocument* doc = m_browser->document();
    for (QTextBlock block = doc->begin(); block.isValid(); block = block.next()) {
        for (auto it = block.begin(); !it.atEnd(); ++it) {
            const QTextFragment f = it.fragment();
            if (!f.isValid() || !f.charFormat().isAnchor())
                continue;
            for (const QString& name : f.charFormat().anchorNames()) {
                if (name.startsWith(kValueAnchor))
                    starts.append({name.mid(kValueAnchor.size()), f.position()});
            }
        }
    }
    const QString plain = doc->toRawText();
    QTextCursor cursor(doc);
    for (const Start& s : std::as_const(starts)) {
        const QString text = v.value(s.key, QStringLiteral("?"));
        if (plain.mid(s.position, text.size()) != text) {
            m_built = false; // the page does not read as expected: rebuild it each time instead
            return;
        }
        QTextCharFormat mark;
        mark.setProperty(kValueProperty, s.key);
        cursor.setPosition(s.position);
        cursor.setPosition(s.position + static_cast<int>(text.size()), QTextCursor::KeepAnchor);
        cursor.mergeCharFormat(mark);
    }
}

bool ExplainerPanel::updateValues(const QHash<QString, QString>& v)
{
    struct Run {
        QString key;
        int position;
        int length;
        QString current;
        QTextCharFormat format;
    };
    QList<Run> runs;
    QTextDocument* doc = m_browser->document();
    for (QTextBlock block = doc->begin(); block.isValid(); block = block.next()) {
        for (auto it = block.begin(); !it.atEnd(); ++it) {
            const QTextFragment f = it.fragment();
            if (!f.isValid() || !f.charFormat().hasProperty(kValueProperty))
                continue;
            const QString key = f.charFormat().stringProperty(kValueProperty);
            if (!runs.isEmpty() && runs.back().key == key && runs.back().position + runs.back().length == f.position()) {
                runs.back().length += f.length();
                runs.back().current += f.text();
            } else {
                runs.append({key, f.position(), f.length(), f.text(), f.charFormat()});
            }
        }
    }
    if (runs.isEmpty())
        return false;
    QTextCursor cursor(doc);
    bool editing = false;
    for (auto it = runs.crbegin(); it != runs.crend(); ++it) { // from the end: earlier positions stay valid
        const QString text = v.value(it->key, QStringLiteral("?"));
        if (text == it->current)
            continue;
        if (text.isEmpty()) {
            if (editing)
                cursor.endEditBlock();
            return false; // an empty run would lose its mark: start over
        }
        if (!editing) {
            cursor.beginEditBlock();
            editing = true;
        }
        cursor.setPosition(it->position);
        cursor.setPosition(it->position + it->length, QTextCursor::KeepAnchor);
        cursor.insertText(text, it->format);
    }
    if (editing)
        cursor.endEditBlock();
    return true;
}

void ExplainerPanel::showTopic(const QString& topic)
{
    if (topic == m_topic)
        return;
    m_topic = topic;
    m_browser->scrollToAnchor(topic);
}

QString ExplainerPanel::html() const
{
    return m_browser->toHtml();
}

QString ExplainerPanel::text() const
{
    return m_browser->toPlainText();
}

void ExplainerPanel::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange) {
        m_built = false; // the colours are in the style sheet
        refresh();
    }
}

} // namespace mla
