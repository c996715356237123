#include "panels/user_guide.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QTextBrowser>
#include <QUrl>
#include <QVBoxLayout>

namespace mla {
namespace {

QString guideDocLink(const QString& docsDir, const QString& name, const QString& what)
{
    const QString file = docsDir.isEmpty() ? QString() : QDir(docsDir).filePath(name);
    if (!file.isEmpty() && QFileInfo::exists(file))
        return QStringLiteral("<a href=\"%1\">docs/%2</a> — %3").arg(QUrl::fromLocalFile(file).toString(), name, what);
    return QStringLiteral("docs/%1 — %2").arg(name, what);
}

} // namespace

QString UserGuideDialog::docsDir()
{
    for (const char* dir : {MLA_DOCS_INSTALL_DIR, MLA_DOCS_SOURCE_DIR}) {
        const QString d = QString::fromUtf8(dir);
        if (QFileInfo::exists(QDir(d).filePath(QStringLiteral("gui.md"))))
            return d;
    }
    return QString();
}

QString UserGuideDialog::html(const QString& docsDir)
{
    QString h;
    h += tr("<h2>MLA Workbench — user guide</h2>"
            "<p>The workbench converts a model with multi-head or grouped-query attention (Llama, Mistral, Qwen2, SmolLM) to "
            "Multi-head Latent Attention: some RoPE frequency pairs keep their rotation, the rest of every key and value goes "
            "into one low-rank latent, and the cache stores that latent. You see every trade-off before converting, convert, "
            "check the converted model against the original, and export it.</p>");
    h += tr("<h3>The workflow</h3><ol>"
            "<li><b>Open</b> a model (File &gt; Open Checkpoint, Open Folder, or drop it on the window; the demo opens when "
            "none is given). The Model panel shows its shape and KV cache.</li>"
            "<li><b>Analyze</b> (F5): calibration tokens, the score of every RoPE pair and the key/value spectra. The time and "
            "memory it will take show next to the button before it starts.</li>"
            "<li><b>Choose the settings</b> (left): a preset, the pairs that keep RoPE, the latent width or the KV saving. The "
            "Preview tab updates at once: cache per token, parameters, predicted error per layer, memory against context.</li>"
            "<li><b>Convert</b> (Ctrl+R): the sanity check follows (perplexity, KL, top-1 agreement, generations side by side).</li>"
            "<li>Optionally <b>Heal</b> (Ctrl+5) to win back part of the loss by block-wise distillation.</li>"
            "<li><b>Export</b> (Ctrl+E) a Hugging Face folder with its model card, or a GGUF for llama.cpp (Ctrl+Shift+E). "
            "<b>Save Session</b> (Ctrl+S) keeps the analysis, settings and results to reopen later.</li></ol>");
    h += tr("<h3>The controls</h3><ul>"
            "<li><b>Preset</b>: <i>paper</i> is the MHA2MLA code's initialisation; <i>best</i> adds per-layer allocation, "
            "rotation-loss pairs, whitened decomposition and refits.</li>"
            "<li><b>Target</b>: the MHA2MLA layout (per-layer widths, healable) or the DeepSeek-V3 layout that stock "
            "transformers, vLLM, SGLang and llama.cpp load.</li>"
            "<li><b>RoPE strategy / pairs</b>: which frequency pairs keep their rotation and how many per KV head (the RoPE "
            "tab outlines them).</li>"
            "<li><b>SVD method / latent width / KV saving</b>: how keys and values are compressed and how wide the latent is; "
            "the width and the saving move together. The Spectra tab's rank cursor sets the width too.</li>"
            "<li><b>Sigma placement, activation-aware, balance, refit</b>: how the decomposition is made (each tooltip gives "
            "the formula).</li>"
            "<li><b>Decomposition</b>: exact (default) or randomized, faster on the CPU for narrow latents; a randomized "
            "conversion measures its first layer both ways and the status bar shows the error and time of each "
            "(<code>--decomposition</code>, <code>--power-iterations</code>).</li>"
            "<li><b>Allocate per layer</b> and <b>Allocate now</b>: measured per-layer pairs and widths for the same cache "
            "budget; the Preview's <i>Compare with</i> shows a preset's per-layer errors (a preset that allocates, with its "
            "measured allocation) beside yours.</li>"
            "<li><b>Calibration</b>: sampled from the model, or a text or token-id file.</li>"
            "<li><b>Run bar</b>: the device, Analyze and Convert with their estimates, progress, the time left and Cancel (Esc).</li>"
            "</ul><p>Warnings under the settings and in the Preview say when a choice would make the cache larger than the "
            "original's or leave a layer rank-deficient; settings that cannot convert are refused with the allowed range.</p>");
    h += tr("<h3>The same from the command line</h3><p>Every action is one command of <code>mla-workbench-cli</code>, "
            "which runs the same code:</p><pre>"
            "mla-workbench-cli analyze MODEL --session work.h5        # Analyze + Save Session\n"
            "mla-workbench-cli convert MODEL --out DIR --preset best --kv-saving 0.75 --check   # Convert, check, export\n"
            "mla-workbench-cli convert MODEL --out DIR --preset best --heal   # + Heal\n"
            "mla-workbench-cli convert MODEL --out DIR --target deepseek-v3   # the DeepSeek-V3 layout\n"
            "mla-workbench-cli export MODEL --format gguf --out model.gguf    # Export as GGUF\n"
            "mla-workbench-cli session work.h5                          # what a session holds\n"
            "mla-workbench-cli eval MODEL | generate MODEL | recover ...</pre>"
            "<p>The settings' flags (<code>--rope-pairs</code>, <code>--latent-dim</code>, <code>--kv-saving</code>, "
            "<code>--rope-strategy</code>, <code>--svd</code>, ...) are listed by <code>mla-workbench-cli convert --help</code>.</p>");
    h += tr("<h3>More</h3><ul>");
    const std::pair<const char*, QString> docs[] = {
        {"gui.md", tr("the window, tab by tab")},
        {"architecture.md", tr("how the program is built")},
        {"beyond-the-paper.md", tr("what the best preset does beyond MHA2MLA")},
        {"deepseek-export.md", tr("the DeepSeek-V3 target")},
        {"healing.md", tr("healing")},
        {"gguf.md", tr("GGUF export and llama.cpp")},
        {"kv-cache.md", tr("quantised KV caches")},
        {"session-format.md", tr("the session file")},
        {"input-output-safety.md", tr("what is never overwritten")},
    };
    for (const auto& [name, what] : docs)
        h += QStringLiteral("<li>%1</li>").arg(guideDocLink(docsDir, QString::fromLatin1(name), what));
    h += QStringLiteral("</ul>");
    return h;
}

UserGuideDialog::UserGuideDialog(QWidget* parent) : QDialog(parent)
{
    setWindowTitle(tr("MLA Workbench User Guide"));
    m_browser = new QTextBrowser(this);
    m_browser->setOpenExternalLinks(true);
    m_browser->setHtml(html(docsDir()));
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_browser);
    layout->addWidget(buttons);
    resize(760, 640);
}

} // namespace mla
