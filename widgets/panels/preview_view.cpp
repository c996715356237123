#include "panels/preview_view.h"

#include "conversion/presets.h"
#include "document/formatting.h"
#include "document/workbench.h"
#include "models/layer_preview_model.h"
#include "plots/bar_plot.h"
#include "plots/memory_plot.h"
#include "panels/notice_label.h"
#include "view_data/view_data.h"

#include <QComboBox>
#include <QFrame>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QTableView>
#include <QTimer>
#include <QVBoxLayout>

#include <algorithm>

namespace mla {
namespace {

QLabel* card(const QString& title, QWidget* parent, QGridLayout* grid, int column)
{
    auto* frame = new QFrame(parent);
    frame->setFrameShape(QFrame::StyledPanel);
    auto* v = new QVBoxLayout(frame);
    v->setContentsMargins(10, 6, 10, 6);
    auto* caption = new QLabel(title, frame);
    caption->setForegroundRole(QPalette::PlaceholderText);
    auto* value = new QLabel(frame);
    value->setTextFormat(Qt::RichText);
    value->setTextInteractionFlags(Qt::TextSelectableByMouse);
    // Wrapped, so four cards fit a 1280-pixel window beside the docks.
    value->setWordWrap(true);
    caption->setWordWrap(true);
    v->addWidget(caption);
    v->addWidget(value);
    grid->addWidget(frame, 0, column);
    return value;
}

} // namespace

PreviewView::PreviewView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    auto* cards = new QGridLayout;
    m_kv = card(tr("KV cache per token"), this, cards, 0);
    m_bytes = card(tr("Cache memory"), this, cards, 1);
    m_params = card(tr("Parameters"), this, cards, 2);
    m_error = card(tr("Predicted error (mean of layers)"), this, cards, 3);
    m_kv->setToolTip(tr("Σ over layers: 2·n<sub>kv</sub>·d<sub>h</sub> before, d<sub>c</sub> + n<sub>kv</sub>·r after; saving = 1 − after/before"));
    m_error->setToolTip(tr("Relative reconstruction error of [W<sub>k_nope</sub>; W<sub>v</sub>] from the spectra: "
                           "√(Σ<sub>i&gt;k</sub> s<sub>i</sub>²/Σ s<sub>i</sub>²), on the weights and on calibration activations"));
    m_problem = new NoticeLabel(Tone::Error, this);
    QFont bold = m_problem->font();
    bold.setBold(true);
    m_problem->setFont(bold);
    m_problem->hide();
    m_warning = new NoticeLabel(Tone::Warning, this);
    m_warning->hide();
    m_layout = new QLabel(this);
    m_layout->setWordWrap(true);
    m_layout->setTextFormat(Qt::RichText);
    m_layout->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_layout->hide();

    m_compare = new QComboBox(this);
    m_compare->addItem(tr("nothing"), QString());
    for (const PresetInfo& p : conversionPresets())
        m_compare->addItem(tr("preset %1").arg(QString::fromStdString(p.name)), QString::fromStdString(p.name));
    m_compare->setToolTip(tr("Show a preset's predicted errors beside the current settings' (same latent budget); a preset "
                             "that allocates per layer is shown with its measured allocation"));
    m_compareNote = new QLabel(this);
    m_compareNote->setWordWrap(true);
    m_compareNote->hide();
    m_measure = new QPushButton(this);
    m_measure->setToolTip(tr("Runs the preset's allocation (what Convert with it would measure) without changing your settings"));
    m_measure->hide();
    connect(m_measure, &QPushButton::clicked, this, [this] { m_workbench->measurePresetAllocation(m_compare->currentData().toString()); });

    m_errors = new BarPlot(this);
    m_memory = new MemoryPlot(this);
    m_layers = new LayerPreviewModel(this);
    auto* proxy = new QSortFilterProxyModel(this);
    proxy->setSourceModel(m_layers);
    proxy->setSortRole(LayerPreviewModel::SortRole);
    m_table = new QTableView(this);
    m_table->setModel(proxy);
    m_table->setSortingEnabled(true);
    m_table->sortByColumn(LayerPreviewModel::LayerColumn, Qt::AscendingOrder);
    m_table->verticalHeader()->setVisible(false);
    // Columns fit their contents, but not on every frame of a slider drag (ResizeToContents measures every cell on each
    // change): once when the rows change and once a drag pauses.
    m_table->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_fitColumns = new QTimer(this);
    m_fitColumns->setSingleShot(true);
    m_fitColumns->setInterval(250);
    connect(m_fitColumns, &QTimer::timeout, m_table, &QTableView::resizeColumnsToContents);
    connect(proxy, &QAbstractItemModel::modelReset, m_table, &QTableView::resizeColumnsToContents);
    connect(proxy, &QAbstractItemModel::dataChanged, m_fitColumns, qOverload<>(&QTimer::start));
    m_table->setAlternatingRowColors(true);
    m_table->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed | QAbstractItemView::SelectedClicked);
    m_table->verticalHeader()->setDefaultSectionSize(m_table->fontMetrics().height() + 6);

    auto* compareRow = new QHBoxLayout;
    compareRow->addWidget(new QLabel(tr("Compare with:"), this));
    compareRow->addWidget(m_compare);
    compareRow->addWidget(m_measure);
    compareRow->addStretch(1);
    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->setContentsMargins(0, 0, 0, 0);
    leftLayout->addLayout(compareRow);
    leftLayout->addWidget(m_compareNote);
    leftLayout->addWidget(m_errors, 1);
    auto* plots = new QSplitter(Qt::Horizontal, this);
    plots->addWidget(left);
    plots->addWidget(m_memory);
    plots->setStretchFactor(0, 1);
    plots->setStretchFactor(1, 1);
    plots->setSizes({500, 500});
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(plots);
    split->addWidget(m_table);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(cards);
    layout->addWidget(m_problem);
    layout->addWidget(m_warning);
    layout->addWidget(m_layout);
    layout->addWidget(split, 1);

    connect(m_layers, &LayerPreviewModel::latentEdited, m_workbench, [this](int layer, qint64 latent) { m_workbench->setLayerLatent(layer, latent); });
    connect(m_layers, &LayerPreviewModel::lockToggled, m_workbench, &Workbench::setLayerLocked);
    connect(m_compare, &QComboBox::currentIndexChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::previewChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::modelChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::conversionChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::presetAllocationChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::busyChanged, this, &PreviewView::refresh);
    connect(m_workbench, &Workbench::memoryParametersChanged, this, &PreviewView::refreshMemory);
    connect(m_workbench, &Workbench::sanityChanged, this, &PreviewView::refreshMemory);
    refresh();
}

QString PreviewView::warningText() const
{
    return m_warning->isHidden() ? QString() : m_warning->text();
}

QString PreviewView::problemText() const
{
    return m_problem->isHidden() ? QString() : m_problem->text();
}

QString PreviewView::layoutText() const
{
    return m_layout->text();
}

QString PreviewView::deepSeekLayoutHtml() const
{
    const ModelConfig* c = m_workbench->config();
    QStringList lines;
    if (c && m_workbench->deepSeekTarget()) {
        if (const auto& w = m_workbench->deepSeekWidths()) {
            const std::int64_t original = c->kvElementsPerToken();
            const std::int64_t after = (w->kvLoraRank + w->ropeDim) * c->layers;
            lines << tr("<b>DeepSeek-V3 layout</b> (planned): kv_lora_rank <b>%1</b> + qk_rope_head_dim <b>%2</b> (one RoPE head shared by "
                        "all %3 heads) = %4 values per token in every layer; qk_nope_head_dim %5, v_head_dim %5 per head. "
                        "KV values per token %6 → %7. Per-layer widths and predicted errors do not apply to this layout: "
                        "the conversion measures them.")
                         .arg(w->kvLoraRank)
                         .arg(w->ropeDim)
                         .arg(c->heads)
                         .arg(w->kvLoraRank + w->ropeDim)
                         .arg(c->headDim)
                         .arg(fmt::integer(original), fmt::integer(after));
            if (w->origin == "default" && m_workbench->settings().allocate)
                lines << tr("The split between kv_lora_rank and qk_rope_head_dim is measured when converting (Allocate is on).");
        }
    }
    const auto& conversion = m_workbench->conversion();
    if (conversion && conversion->deepSeek && conversion->plan.converted.deepseek) {
        const DeepSeekAttentionConfig& a = *conversion->plan.converted.deepseek;
        const ModelConfig& original = conversion->plan.original;
        const std::int64_t before = original.kvElementsPerToken();
        const std::int64_t after = conversion->plan.converted.kvElementsPerToken();
        lines << tr("<b>Converted</b> (DeepSeek-V3 layout, widths %1): kv_lora_rank <b>%2</b>, qk_rope_head_dim <b>%3</b>, "
                    "qk_nope_head_dim %4, v_head_dim %5, rope_theta %6; KV values per token %7 → %8 (%9).")
                     .arg(QString::fromStdString(conversion->deepSeek->widths.origin))
                     .arg(a.kvLoraRank)
                     .arg(a.ropeDim)
                     .arg(a.nopeDim)
                     .arg(a.valueDim)
                     .arg(conversion->plan.converted.rope.theta, 0, 'g', 6)
                     .arg(fmt::integer(before), fmt::integer(after),
                          fmt::signedPercent(before > 0 ? static_cast<double>(after - before) / static_cast<double>(before) : 0.0));
        if (!m_workbench->conversionMatchesSettings())
            lines.back() += tr(" <i>(made with earlier settings)</i>");
    }
    return lines.join(QStringLiteral("<br>"));
}

QString PreviewView::summaryText() const
{
    QStringList parts;
    for (QLabel* l : {m_kv, m_bytes, m_params, m_error})
        parts << l->text();
    return parts.join(QLatin1Char('\n'));
}

QString PreviewView::comparisonText() const
{
    return m_compareNote->isHidden() ? QString() : m_compareNote->text();
}

void PreviewView::refreshComparison(bool predicted, QList<BarPlot::Series>& series)
{
    const QString preset = m_compare->currentData().toString();
    m_measure->setVisible(false);
    m_compareNote->setVisible(false);
    if (preset.isEmpty())
        return;
    const auto comparison = predicted ? m_workbench->comparison(preset.toStdString()) : std::nullopt;
    auto note = [this](const QString& text) {
        m_compareNote->setText(text);
        m_compareNote->setVisible(true);
    };
    if (!comparison) {
        note(tr("The comparison needs the predicted errors: run Analyze (F5)."));
        return;
    }
    if (!comparison->preview.problem.empty()) {
        note(tr("Preset %1 cannot convert with these widths: %2").arg(preset, QString::fromStdString(comparison->preview.problem)));
        return;
    }
    if (comparison->allocationMissing) {
        // Its bars under one width for every layer would not be what it converts to: measure its allocation first.
        note(tr("Preset %1 chooses each layer's pairs and latent by measuring them (allocation): measure it to compare its "
                "real per-layer errors with the current ones.")
                 .arg(preset));
        m_measure->setText(tr("Measure %1's allocation").arg(preset));
        m_measure->setVisible(true);
        m_measure->setEnabled(m_workbench->hasModel() && !m_workbench->isBusy());
        return;
    }
    if (comparison->sameAsCurrent) {
        note(tr("The current settings are preset %1's (same recipe and per-layer widths): its bars are the current ones.").arg(preset));
        return;
    }
    const bool allocated = comparison->settings.conversion.allocate;
    BarPlot::Series s{tr("preset %1%2 (%3)")
                          .arg(preset, allocated ? tr(", measured allocation") : QString(),
                               comparison->useActivation ? tr("activations") : tr("weights")),
                      {}};
    for (const auto& l : comparison->preview.layers)
        s.values.push_back(comparison->useActivation ? l.activationError : l.weightError);
    series.append(s);
    const ConversionPreview& p = m_workbench->preview();
    const double current = comparison->useActivation && p.meanActivationError >= 0 ? p.meanActivationError : p.meanWeightError;
    const double other = comparison->useActivation ? comparison->preview.meanActivationError : comparison->preview.meanWeightError;
    note(tr("Mean predicted error: current %1, preset %2 %3 (same KV budget).").arg(fmt::error(current), preset, fmt::error(other)));
}

void PreviewView::refresh()
{
    const ConversionPreview& p = m_workbench->preview();
    const ModelConfig* c = m_workbench->config();
    const bool valid = c && p.problem.empty() && !p.layers.empty();
    m_problem->setVisible(c && !p.problem.empty());
    m_problem->setText(tr("These settings cannot be converted: %1").arg(QString::fromStdString(p.problem)));
    const QStringList warnings = m_workbench->settingsWarnings();
    m_warning->setVisible(c && !warnings.isEmpty());
    m_warning->setText(QStringLiteral("\u26a0 ") + warnings.join(QStringLiteral("\n\u26a0 ")));
    const QString layoutHtml = deepSeekLayoutHtml();
    m_layout->setText(layoutHtml);
    m_layout->setVisible(!layoutHtml.isEmpty());
    const bool deepSeek = m_workbench->deepSeekTarget();
    if (!valid) {
        for (QLabel* l : {m_kv, m_bytes, m_params, m_error})
            l->setText(QStringLiteral("\u2014"));
        m_layers->setPreview({}, {}, 1);
        m_compareNote->hide();
        m_measure->hide();
        m_errors->setData({}, {}, tr("layer"), tr("relative error"));
        m_errors->setPlaceholder(c ? tr("No predicted errors: these settings cannot be converted (see the message above)")
                                   : tr("Open a model to begin"));
        refreshMemory(); // its empty state
        return;
    }
    m_kv->setText(tr("<b>%1</b> → <b>%2</b> elements &nbsp; <span style='font-size:large'><b>%3</b></span>")
                      .arg(fmt::integer(p.kv.originalTotal), fmt::integer(p.kv.convertedTotal), fmt::signedPercent(-p.kv.saving())));
    const auto& conversion = m_workbench->conversion();
    if (deepSeek && conversion && conversion->deepSeek && conversion->converted && m_workbench->conversionMatchesSettings()) {
        const double after = static_cast<double>(conversion->converted->parameterCount());
        const double change = p.paramsOriginal > 0 ? (after - static_cast<double>(p.paramsOriginal)) / static_cast<double>(p.paramsOriginal) : 0.0;
        m_params->setText(tr("<b>%1</b> → <b>%2</b> (%3, as converted)")
                              .arg(fmt::count(static_cast<double>(p.paramsOriginal)), fmt::count(after), fmt::signedPercent(change, 2)));
    } else if (deepSeek) {
        m_params->setText(tr("%1 → known after Convert").arg(fmt::count(static_cast<double>(p.paramsOriginal))));
    } else if (p.paramsConverted >= 0) {
        const double change = p.paramsOriginal > 0 ? static_cast<double>(p.paramsConverted - p.paramsOriginal) / static_cast<double>(p.paramsOriginal) : 0.0;
        m_params->setText(tr("<b>%1</b> → <b>%2</b> (%3)")
                              .arg(fmt::count(static_cast<double>(p.paramsOriginal)), fmt::count(static_cast<double>(p.paramsConverted)),
                                   fmt::signedPercent(change, 2)));
    } else {
        m_params->setText(tr("%1 → run Analyze").arg(fmt::count(static_cast<double>(p.paramsOriginal))));
    }
    const bool predicted = m_workbench->previewHasErrors() && !deepSeek;
    if (deepSeek) {
        m_error->setText(tr("measured by the conversion (no closed form for this layout)"));
    } else if (m_workbench->previewHasErrors()) {
        QString text = tr("weights <b>%1</b>").arg(fmt::error(p.meanWeightError));
        if (p.meanActivationError >= 0)
            text += tr(" · activations <b>%1</b>").arg(fmt::error(p.meanActivationError));
        if (m_workbench->previewIsStale())
            text += tr(" <i>(updating…)</i>");
        m_error->setText(text);
    } else {
        m_error->setText(tr("run Analyze (F5)"));
    }

    m_layers->setPreview(p, m_workbench->lockedLayers(), deepSeek ? 1 : c->kvHeads, !deepSeek);

    QStringList categories;
    BarPlot::Series weight{tr("weight space"), {}};
    BarPlot::Series activation{tr("activation space"), {}};
    for (std::size_t l = 0; l < p.layers.size(); ++l) {
        categories << QString::number(l);
        weight.values.push_back(p.layers[l].weightError);
        activation.values.push_back(p.layers[l].activationError);
    }
    QList<BarPlot::Series> series{weight};
    if (p.meanActivationError >= 0)
        series.append(activation);
    refreshComparison(predicted, series);
    m_errors->setPlaceholder(predicted ? QString()
                             : deepSeek ? tr("DeepSeek-V3 layout: the conversion measures each layer's error (no prediction from the spectra)")
                                        : tr("Run Analyze (F5) to see the predicted error per layer"));
    m_errors->setData(categories, predicted ? series : QList<BarPlot::Series>{}, tr("layer"), tr("predicted relative error"));
    m_errors->setReferenceLine(predicted ? p.meanWeightError : -1.0, tr("mean (weights)"));
    refreshMemory();
}

std::vector<view::MeasuredCache> PreviewView::measuredPoints() const
{
    // Only a check of the conversion the preview describes: after a settings move the measurement is of another model.
    const auto& sanity = m_workbench->sanity();
    if (!sanity || !m_workbench->conversion() || !m_workbench->conversionMatchesSettings())
        return {};
    return view::measuredCaches(*sanity);
}

void PreviewView::refreshMemory()
{
    const ConversionPreview& p = m_workbench->preview();
    const ModelConfig* c = m_workbench->config();
    if (!c || !p.problem.empty() || p.layers.empty()) {
        m_memory->setPlaceholder(!c ? tr("Open a model to begin")
                                    : tr("No memory curves: these settings cannot be converted (see the message above)"));
        m_memory->setCurves({}, {});
        m_bytes->setText(QStringLiteral("\u2014"));
        return;
    }
    const std::int64_t context = m_workbench->contextLength();
    const std::int64_t batch = m_workbench->batchSize();
    const std::vector<std::int64_t> contexts = view::contextGrid(*c, context);
    // Formula curves for the usual formats (what --kv-cache bf16 / int8 / int4 allocate), then, when the sanity check
    // of a conversion with the current settings ran, the bytes its caches really took as points, with a formula curve
    // for any measured format the usual ones do not cover: a point off its curve would be an accounting error.
    struct Formula {
        bool converted;
        KvCacheFormat format;
        QString name;
        Qt::PenStyle style;
    };
    QList<Formula> formulas;
    const std::pair<CacheFormat, Qt::PenStyle> formats[] = {
        {CacheFormat::BF16, Qt::SolidLine}, {CacheFormat::Int8, Qt::DashLine}, {CacheFormat::Int4, Qt::DotLine}};
    for (const auto& entry : formats) {
        const KvCacheFormat f = KvCacheFormat::withDefaultRope({entry.first, kDefaultCacheGroupSize});
        const QString name = QString::fromUtf8(cacheFormatName(entry.first).data()).toUpper();
        formulas.append({false, f, name, entry.second});
        formulas.append({true, f, name, entry.second});
    }
    const std::vector<view::MeasuredCache> measured = measuredPoints();
    for (const view::MeasuredCache& m : measured) {
        const bool covered = std::any_of(formulas.begin(), formulas.end(), [&m](const Formula& f) { return f.converted == m.converted && f.format == m.format; });
        if (!covered)
            formulas.append({m.converted, m.format, QString::fromStdString(m.formatName),
                             m.format.isFloat32() ? Qt::DashDotLine : Qt::DashDotDotLine});
    }
    QList<MemoryPlot::Curve> curves;
    for (const Formula& f : formulas)
        curves.append({(f.converted ? tr("MLA · %1") : tr("original · %1")).arg(f.name),
                       view::cacheBytesCurve(p.kv, f.converted, contexts, batch, f.format), f.converted ? 0 : 1, f.style, f.converted, false, f.name});
    for (const view::MeasuredCache& m : measured) {
        MemoryPlot::Curve c{(m.converted ? tr("measured · MLA · %1") : tr("measured · original · %1")).arg(QString::fromStdString(m.formatName)),
                            view::measuredBytesCurve(m.bytesPerToken, contexts, batch), m.converted ? 0 : 1, Qt::NoPen, m.converted};
        c.measured = true;
        curves.append(c);
    }
    m_memory->setCurves(contexts, curves);
    m_memory->setMarker(context);
    const CacheFormat f = m_workbench->cacheFormat();
    const QString fname = QString::fromUtf8(cacheFormatName(f).data()).toUpper();
    m_bytes->setText(tr("%1: <b>%2</b> → <b>%3</b> per token<br>at %4 × %5: <b>%6</b> → <b>%7</b>")
                         .arg(fname, fmt::bytes(p.kv.originalBytesPerToken(f)), fmt::bytes(p.kv.convertedBytesPerToken(f)),
                              fmt::integer(context))
                         .arg(batch)
                         .arg(fmt::bytes(p.kv.originalCacheBytes(context, batch, f)), fmt::bytes(p.kv.convertedCacheBytes(context, batch, f))));
}

} // namespace mla
