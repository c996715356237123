// The self-test's steps for the GGUF export and the DeepSeek-V3 target (self_test.h).
#include "self_test.h"

#include "document/workbench.h"
#include "engine/transformer.h"
#include "main_window.h"
#include "model/model_loader.h"
#include "models/layer_preview_model.h"
#include "panels/gguf_export_dialog.h"
#include "panels/heal_view.h"
#include "panels/preview_view.h"
#include "panels/settings_panel.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QPushButton>
#include <QSpinBox>
#include <QStatusBar>
#include <QTabWidget>
#include <QUndoStack>

#include <cmath>
#include <limits>

namespace mla {
namespace {

MatrixRM logitsOf(const Model& model, const std::vector<int>& ids)
{
    const Transformer t(model);
    KvCache cache = t.newCache(static_cast<std::int64_t>(ids.size()));
    return t.forward(ids, cache, Logits::All);
}

// Largest |a - b| over the first `columns` logits of every position, relative to the largest |a|.
double relativeDifference(const MatrixRM& a, const MatrixRM& b, std::int64_t columns)
{
    if (a.rows() != b.rows() || a.cols() < columns || b.cols() < columns)
        return std::numeric_limits<double>::infinity();
    const MatrixRM x = a.leftCols(columns);
    const MatrixRM y = b.leftCols(columns);
    return static_cast<double>((x - y).cwiseAbs().maxCoeff()) / std::max(1e-30, static_cast<double>(x.cwiseAbs().maxCoeff()));
}

std::vector<int> someIds(std::int64_t vocab)
{
    std::vector<int> ids;
    for (int i = 0; i < 16; ++i)
        ids.push_back(static_cast<int>((1 + 37 * i) % vocab));
    return ids;
}

} // namespace

// The conversion on show is of the MHA2MLA target here: the dialog says the original is written, and it is, as
// llama.cpp's llama architecture; reloaded by our reader it gives the opened model's logits.
void SelfTest::exportGguf()
{
    Workbench* wb = m_window->workbench();
    check(wb->conversion() && !wb->ggufExportsConversion(), QStringLiteral("the mha2mla conversion would be exported as GGUF"));
    check(m_window->exportGgufAction()->isEnabled(), QStringLiteral("File > Export as GGUF is disabled with a model open"));
    const QString what = m_window->ggufExportDescription();
    check(what.contains(QStringLiteral("opened model as it is")) && what.contains(QStringLiteral("DeepSeek-V3")),
          QStringLiteral("the GGUF dialog does not say the original is written and why: %1").arg(what));
    GgufExportDialog dialog(what, QDir(m_dir).filePath(QStringLiteral("stories260K")), QStringLiteral("stories"));
    dialog.weightsCombo()->setCurrentIndex(dialog.weightsCombo()->findData(static_cast<int>(GgmlType::F32)));
    check(dialog.file().endsWith(QStringLiteral("stories260K.gguf")) && dialog.weights() == GgmlType::F32,
          QStringLiteral("the dialog gives %1").arg(dialog.file()));

    std::optional<GgufExportReport> report;
    auto c = QObject::connect(wb, &Workbench::ggufExported, [&report](const GgufExportReport& r) { report = r; });
    wb->exportGgufTo(dialog.file(), dialog.weights(), dialog.name());
    bool done = waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs);
    check(done && report, QStringLiteral("GGUF export failed: %1").arg(m_window->lastError()));
    QObject::disconnect(c);
    if (!report)
        return;
    check(report->architecture == "llama" && report->tensors > 0
              && static_cast<qint64>(report->bytesWritten) == QFileInfo(dialog.file()).size()
              && report->kvValuesPerToken == wb->config()->kvElementsPerToken(),
          QStringLiteral("the report says %1, %2 tensors, %3 bytes, %4 KV values per token")
              .arg(QString::fromStdString(report->architecture))
              .arg(report->tensors)
              .arg(report->bytesWritten)
              .arg(report->kvValuesPerToken));
    check(wb->lastGgufExport() == dialog.file(), QStringLiteral("the workbench does not remember the GGUF export"));
    const QString status = m_window->statusBar()->currentMessage();
    check(status.contains(QStringLiteral(": llama, %1 tensors").arg(report->tensors)) && status.contains(QStringLiteral("KV values per token")),
          QStringLiteral("the status bar does not show the report: %1").arg(status));
    check(status.contains(QStringLiteral("llama-cli -m '%1'").arg(dialog.file())) || status.contains(QStringLiteral("llama-cli -m %1 ").arg(dialog.file())),
          QStringLiteral("the status bar does not show the llama-cli command: %1").arg(status));
    // Scoped: a file our reader maps is an input of every later job, which then may not replace it.
    {
    const Model reloaded = loadModel(dialog.file().toStdString());
    const Model& original = *wb->model().model;
    check(reloaded.config.layers == original.config.layers && reloaded.config.hidden == original.config.hidden
              && reloaded.config.kvHeads == original.config.kvHeads && reloaded.config.vocab >= original.config.vocab,
          QStringLiteral("the GGUF reloads with another shape"));
    const std::vector<int> ids = someIds(original.config.vocab);
    const double difference = relativeDifference(logitsOf(original, ids), logitsOf(reloaded, ids), original.config.vocab);
    check(difference < 1e-5, QStringLiteral("the F32 GGUF's logits differ from the opened model's by %1 (relative)").arg(difference));
    say(QStringLiteral("        GGUF: %1 tensors, %2 bytes, logits within %3 of the opened model's")
            .arg(report->tensors)
            .arg(report->bytesWritten)
            .arg(difference, 0, 'g', 2));
    }

    // A second export to the same file replaces the GGUF this tool wrote, without asking.
    report.reset();
    c = QObject::connect(wb, &Workbench::ggufExported, [&report](const GgufExportReport& r) { report = r; });
    wb->exportGgufTo(dialog.file(), GgmlType::Q8_0, dialog.name());
    done = waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs);
    check(done && report && report->weights == GgmlType::Q8_0,
          QStringLiteral("a Q8_0 export over the earlier one failed: %1").arg(m_window->lastError()));
    QObject::disconnect(c);
}

// The DeepSeek-V3 target end to end in the window: the settings panel's Target, the preview's widths, Convert, the
// check, every tab shown, Heal refused with the reason, Export as a folder (reloads as deepseek_v3 with the converted
// model's logits) and as GGUF (deepseek2, likewise), and a session that keeps the target.
void SelfTest::deepSeekTarget()
{
    Workbench* wb = m_window->workbench();
    SettingsPanel* s = m_window->settingsPanel();
    const ModelConfig c = *wb->config();
    check(!s->flashMlaCheck()->isEnabled(), QStringLiteral("FlashMLA is offered for the MHA2MLA target"));
    s->targetCombo()->setCurrentIndex(s->targetCombo()->findData(static_cast<int>(ConversionTarget::DeepSeekV3)));
    check(wb->deepSeekTarget() && s->flashMlaCheck()->isEnabled(), QStringLiteral("the Target combo did not choose DeepSeek-V3"));
    wb->undoStack()->undo();
    check(!wb->deepSeekTarget(), QStringLiteral("undo did not restore the MHA2MLA target"));
    wb->undoStack()->redo();
    check(wb->deepSeekTarget(), QStringLiteral("redo did not restore the DeepSeek-V3 target"));
    // stories260K caches 2 x 4 KV heads x 8 = 64 values per layer: far too small for FlashMLA's 576, which must say so.
    s->flashMlaCheck()->setChecked(true);
    check(wb->settings().flashMla && QString::fromStdString(wb->preview().problem).contains(QStringLiteral("too small")),
          QStringLiteral("FlashMLA on the demo model showed no problem: %1").arg(QString::fromStdString(wb->preview().problem)));
    s->flashMlaCheck()->setChecked(false);
    s->savingSpin()->setValue(75.0);
    check(wb->preview().problem.empty() && wb->deepSeekWidths(),
          QStringLiteral("DeepSeek-V3 at 75%: %1").arg(QString::fromStdString(wb->preview().problem)));
    if (!wb->deepSeekWidths())
        return;
    const DeepSeekWidths w = *wb->deepSeekWidths();
    check(static_cast<std::int64_t>(wb->preview().layers.size()) == c.layers
              && wb->preview().kv.convertedTotal == (w.kvLoraRank + w.ropeDim) * c.layers,
          QStringLiteral("the preview does not show kv_lora_rank + rope in every layer"));
    check(wb->resolvedLatent() == w.kvLoraRank && wb->resolvedRopePairs() == w.ropeDim / 2,
          QStringLiteral("the settings show d_c %1, pairs %2 for kv_lora_rank %3, rope %4")
              .arg(wb->resolvedLatent())
              .arg(wb->resolvedRopePairs())
              .arg(w.kvLoraRank)
              .arg(w.ropeDim));
    check(m_window->previewView()->layoutText().contains(QStringLiteral("kv_lora_rank")), QStringLiteral("the preview does not show the DeepSeek widths"));
    LayerPreviewModel* layers = m_window->previewView()->layerModel();
    check(layers->rowCount() == c.layers && !(layers->flags(layers->index(0, LayerPreviewModel::LatentColumn)) & Qt::ItemIsEditable),
          QStringLiteral("a per-layer latent is editable for the DeepSeek-V3 target"));
    // The shared head may take more pairs than one KV head has.
    const int pairs = static_cast<int>(std::min<std::int64_t>(c.pairsPerHead() + 1, c.kvHeads * c.pairsPerHead()));
    s->pairsSpin()->setValue(pairs);
    check(wb->resolvedRopePairs() == pairs && wb->preview().problem.empty(),
          QStringLiteral("a shared RoPE head of %1 pairs: %2").arg(pairs).arg(QString::fromStdString(wb->preview().problem)));
    wb->undoStack()->undo();
    check(wb->resolvedRopePairs() == w.ropeDim / 2, QStringLiteral("undo did not restore the shared head's pairs"));
    for (int t = 0; t < m_window->tabs()->count(); ++t)
        m_window->showTab(t); // every view with the target chosen, before converting

    wb->convert();
    bool done = waitUntil([wb] { return !wb->isBusy() && wb->conversion() && wb->sanity(); }, kJobTimeoutMs);
    check(done,
          QStringLiteral("the DeepSeek-V3 conversion or its check did not finish: %1").arg(m_window->lastError()));
    check(wb->conversionIsDeepSeek(), QStringLiteral("the conversion is not of the DeepSeek-V3 target"));
    if (!wb->conversionIsDeepSeek() || !wb->sanity())
        return;
    const ConversionOutcome conversion = *wb->conversion();
    // With Allocate on, the conversion measures the split of the same budget per layer.
    const DeepSeekWidths& made = conversion.deepSeek->widths;
    check(conversion.plan.converted.deepseek && !conversion.plan.converted.mla && conversion.plan.converted.deepseek->kvLoraRank == made.kvLoraRank
              && made.kvLoraRank + made.ropeDim == w.kvLoraRank + w.ropeDim && (made.origin == "measured" || made.kvLoraRank == w.kvLoraRank),
          QStringLiteral("the conversion (%1 + %2, %3) is not the DeepSeek-V3 layout planned (%4 + %5)")
              .arg(made.kvLoraRank)
              .arg(made.ropeDim)
              .arg(QString::fromStdString(made.origin))
              .arg(w.kvLoraRank)
              .arg(w.ropeDim));
    const SanityReport r = *wb->sanity();
    check(std::isfinite(r.convertedPpl) && r.convertedPpl > 1.0 && r.convertedKvBytesPerToken < r.originalKvBytesPerToken,
          QStringLiteral("DeepSeek-V3 check: perplexity %1, cache %2 vs %3 bytes").arg(r.convertedPpl).arg(r.convertedKvBytesPerToken).arg(r.originalKvBytesPerToken));
    say(QStringLiteral("        DeepSeek-V3 (%7): kv_lora_rank %1 + rope %2, perplexity %3 -> %4, KL %5, top-1 %6")
            .arg(made.kvLoraRank)
            .arg(made.ropeDim)
            .arg(r.originalPpl, 0, 'f', 3)
            .arg(r.convertedPpl, 0, 'f', 3)
            .arg(r.kl, 0, 'f', 4)
            .arg(r.top1Agreement, 0, 'f', 3)
            .arg(QString::fromStdString(made.origin)));
    for (int t = 0; t < m_window->tabs()->count(); ++t)
        m_window->showTab(t); // every view with a deepseek_v3 conversion
    check(m_window->previewView()->layoutText().contains(QStringLiteral("Converted")), QStringLiteral("the preview does not show the converted widths"));
    check(!m_window->healView()->healButton()->isEnabled() && m_window->healView()->healButton()->toolTip().contains(QStringLiteral("DeepSeek-V3")),
          QStringLiteral("Heal is offered for a DeepSeek-V3 conversion"));
    int errors = 0;
    auto e = QObject::connect(wb, &Workbench::errorOccurred, [&errors] { ++errors; });
    wb->healConversion();
    QObject::disconnect(e);
    check(errors == 1 && !wb->isBusy() && m_window->lastError().contains(QStringLiteral("DeepSeek-V3")),
          QStringLiteral("healing a DeepSeek-V3 conversion was not refused with the reason: %1").arg(m_window->lastError()));

    // Export as a folder: the DeepseekV3ForCausalLM layout, reloaded with the in-memory converted model's logits.
    const QString folder = QDir(m_dir).filePath(QStringLiteral("stories260K-deepseek"));
    QString exported;
    auto x = QObject::connect(wb, &Workbench::exported, [&exported](const QString& f) { exported = f; });
    wb->exportTo(folder);
    done = waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs);
    check(done && exported == folder,
          QStringLiteral("DeepSeek-V3 export failed: %1").arg(m_window->lastError()));
    QObject::disconnect(x);
    const std::vector<int> ids = someIds(c.vocab);
    const MatrixRM inMemory = logitsOf(*conversion.converted, ids);
    if (exported == folder) { // scoped: a mapped file is an input of later jobs
        const Model folderModel = loadModel(folder.toStdString());
        check(folderModel.config.deepseek && folderModel.config.architecture == "deepseek_v3",
              QStringLiteral("the exported folder does not load as deepseek_v3 (%1)").arg(QString::fromStdString(folderModel.config.architecture)));
        const double d = relativeDifference(inMemory, logitsOf(folderModel, ids), c.vocab);
        check(d < 1e-4, QStringLiteral("the exported folder's logits differ from the converted model's by %1").arg(d));
    }

    // Export as GGUF: the conversion as llama.cpp's deepseek2, reloaded by our reader.
    check(wb->ggufExportsConversion() && m_window->ggufExportDescription().contains(QStringLiteral("deepseek2")),
          QStringLiteral("the GGUF dialog does not say the conversion is written as deepseek2"));
    const QString gguf = QDir(m_dir).filePath(QStringLiteral("stories260K-deepseek2.gguf"));
    std::optional<GgufExportReport> report;
    auto g = QObject::connect(wb, &Workbench::ggufExported, [&report](const GgufExportReport& rep) { report = rep; });
    wb->exportGgufTo(gguf, GgmlType::F32, QStringLiteral("stories260K-deepseek2"));
    done = waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs);
    check(done && report,
          QStringLiteral("the deepseek2 GGUF export failed: %1").arg(m_window->lastError()));
    QObject::disconnect(g);
    if (report) {
        check(report->architecture == "deepseek2" && report->kvValuesPerToken == (made.kvLoraRank + made.ropeDim) * c.layers,
              QStringLiteral("the GGUF report says %1 with %2 KV values per token")
                  .arg(QString::fromStdString(report->architecture))
                  .arg(report->kvValuesPerToken));
        const Model reloaded = loadModel(gguf.toStdString());
        check(reloaded.config.deepseek.has_value(), QStringLiteral("the deepseek2 GGUF does not reload as DeepSeek attention"));
        const double d = relativeDifference(inMemory, logitsOf(reloaded, ids), c.vocab);
        check(d < 1e-4, QStringLiteral("the deepseek2 GGUF's logits differ from the converted model's by %1").arg(d));
        say(QStringLiteral("        deepseek2 GGUF: %1 tensors, %2 KV values per token, logits within %3 of the converted model's")
                .arg(report->tensors)
                .arg(report->kvValuesPerToken)
                .arg(d, 0, 'g', 2));
    }

    // A session keeps the target (it used to be set back to mha2mla when opened).
    const QString path = QDir(m_dir).filePath(QStringLiteral("session-deepseek.h5"));
    QString saved;
    auto sv = QObject::connect(wb, &Workbench::sessionSaved, [&saved](const QString& p) { saved = p; });
    wb->saveSession(path);
    done = waitUntil([&] { return !wb->isBusy(); }, kJobTimeoutMs);
    check(done && saved == path, QStringLiteral("session save failed: %1").arg(m_window->lastError()));
    QObject::disconnect(sv);
    s->targetCombo()->setCurrentIndex(s->targetCombo()->findData(static_cast<int>(ConversionTarget::Mha2mla)));
    check(!wb->deepSeekTarget(), QStringLiteral("the Target combo did not go back to MHA2MLA"));
    const AnalysisPtr before = wb->analysis();
    wb->openSession(path);
    done = waitUntil([&] { return !wb->isBusy() && wb->analysis() != before; }, kJobTimeoutMs);
    check(done,
          QStringLiteral("session open failed: %1").arg(m_window->lastError()));
    check(wb->deepSeekTarget() && s->targetCombo()->currentData().toInt() == static_cast<int>(ConversionTarget::DeepSeekV3),
          QStringLiteral("the session's DeepSeek-V3 target was not restored"));
}

} // namespace mla
