#include "panels/spectrum_view.h"

#include "document/workbench.h"
#include "plots/spectrum_plot.h"
#include "view_data/view_data.h"

#include <QButtonGroup>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QStandardItemModel>
#include <QToolButton>
#include <QVBoxLayout>

namespace mla {
namespace {

constexpr int kMergeCursor = 201;

view::SpectrumKind spectrumKind(SpectrumView::Kind k)
{
    switch (k) {
    case SpectrumView::Key:
    case SpectrumView::Split:
        return view::SpectrumKind::Key;
    case SpectrumView::Value:
        return view::SpectrumKind::Value;
    case SpectrumView::Joint:
        break;
    }
    return view::SpectrumKind::Joint;
}

} // namespace

SpectrumView::SpectrumView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_source = new QComboBox(this);
    m_source->addItem(tr("weights"), false);
    m_source->addItem(tr("activations (whitened)"), true);
    m_source->setToolTip(tr("<p><b>weights</b>: singular values s<sub>i</sub> of M; the rank-k error is "
                            "√(Σ<sub>i&gt;k</sub> s<sub>i</sub>²/Σ s<sub>i</sub>²) = ‖M − M<sub>k</sub>‖<sub>F</sub>/‖M‖<sub>F</sub>.</p>"
                            "<p><b>activations</b>: singular values of MS with SS<sup>T</sup> = X<sup>T</sup>X/N from calibration: "
                            "the same formula then gives the error on real inputs, E‖Mx − M<sub>k</sub>x‖².</p>"));
    m_layer = new QComboBox(this);
    m_layer->setToolTip(tr("Highlight one layer; dragging the cursor then sets that layer's latent alone (and locks it)"));
    m_kind = new QButtonGroup(this);
    m_kind->setExclusive(true);
    auto* kinds = new QHBoxLayout;
    kinds->setSpacing(0);
    const std::pair<Kind, QString> buttons[] = {{Joint, tr("Joint")}, {Key, tr("Key")}, {Value, tr("Value")}, {Split, tr("Split")}};
    const QString tips[] = {tr("M = [W_k_nope; W_v]: what the joint method truncates"), tr("W_k_nope: the position-free key rows"),
                            tr("W_v: the value rows"), tr("Key (solid) and value (dashed) spectra together: what the split method truncates, d_c/2 each")};
    for (const auto& [kind, label] : buttons) {
        auto* b = new QToolButton(this);
        b->setText(label);
        b->setCheckable(true);
        b->setToolTip(tips[kind]);
        b->setAutoRaise(false);
        m_kind->addButton(b, kind);
        kinds->addWidget(b);
    }
    m_kind->button(Joint)->setChecked(true);
    m_caption = new QLabel(this);
    m_caption->setWordWrap(true);
    m_plot = new SpectrumPlot(this);

    auto* bar = new QHBoxLayout;
    bar->addLayout(kinds);
    bar->addSpacing(12);
    bar->addWidget(new QLabel(tr("On:"), this));
    bar->addWidget(m_source);
    bar->addSpacing(12);
    bar->addWidget(new QLabel(tr("Layer:"), this));
    bar->addWidget(m_layer);
    bar->addStretch(1);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(bar);
    layout->addWidget(m_plot, 1);
    layout->addWidget(m_caption);

    connect(m_kind, &QButtonGroup::idClicked, this, &SpectrumView::refresh);
    connect(m_source, &QComboBox::currentIndexChanged, this, &SpectrumView::refresh);
    connect(m_layer, &QComboBox::currentIndexChanged, this, &SpectrumView::refresh);
    connect(m_plot, &SpectrumPlot::rankDragged, this, &SpectrumView::onRankDragged);
    connect(m_workbench, &Workbench::modelChanged, this, &SpectrumView::refreshLayers);
    connect(m_workbench, &Workbench::analysisChanged, this, &SpectrumView::refreshLayers);
    connect(m_workbench, &Workbench::previewChanged, this, &SpectrumView::refreshCursor);
    refreshLayers();
}

void SpectrumView::setKind(Kind kind)
{
    m_kind->button(kind)->setChecked(true);
    refresh();
}

SpectrumView::Kind SpectrumView::kind() const
{
    return static_cast<Kind>(std::max(0, m_kind->checkedId()));
}

void SpectrumView::refreshLayers()
{
    const ModelConfig* c = m_workbench->config();
    const int layers = c ? static_cast<int>(c->layers) : 0;
    if (m_layer->count() != layers + 1) {
        const QSignalBlocker block(m_layer);
        m_layer->clear();
        m_layer->addItem(tr("all layers"), -1);
        for (int l = 0; l < layers; ++l)
            m_layer->addItem(tr("layer %1").arg(l), l);
    }
    const AnalysisPtr& a = m_workbench->analysis();
    const bool activations = a && a->hasActivationSpectra();
    const QSignalBlocker block(m_source);
    if (!activations)
        m_source->setCurrentIndex(0);
    if (auto* model = qobject_cast<QStandardItemModel*>(m_source->model()); model && model->item(1))
        model->item(1)->setEnabled(activations);
    refresh();
}

void SpectrumView::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_dirty)
        refresh();
}

void SpectrumView::refresh()
{
    const AnalysisPtr& a = m_workbench->analysis();
    if (!a) {
        // At once, shown or not: nothing of the last model's spectra (or its rank cursor) may stay.
        m_dirty = false;
        const QString text = m_workbench->config() ? tr("Run Analyze (F5) to compute the key/value spectra of every layer.")
                                                   : tr("Open a model (File > Open) to begin.");
        m_plot->setPlaceholder(text);
        m_plot->setSeries({}, tr("singular value"));
        m_caption->setText(text);
        return;
    }
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    m_dirty = false;
    const bool activations = m_source->currentData().toBool() && a->hasActivationSpectra();
    const Kind k = kind();
    const view::SpectrumKind sk = spectrumKind(k);
    QList<SpectrumPlot::Series> series;
    const std::size_t layers = a->layers.size();
    for (std::size_t l = 0; l < layers; ++l) {
        const KeyValueSpectra& s = activations ? a->layers[l].activationSpectra : a->layers[l].weightSpectra;
        const double shade = layers > 1 ? static_cast<double>(l) / static_cast<double>(layers - 1) : 0.0;
        if (k == Split) {
            series.append({tr("layer %1 · key").arg(l), s.key, view::retainedEnergy(s, view::SpectrumKind::Key), shade, false});
            series.append({tr("layer %1 · value").arg(l), s.value, view::retainedEnergy(s, view::SpectrumKind::Value), shade, true});
        } else {
            series.append({tr("layer %1").arg(l), view::spectrumValues(s, sk), view::retainedEnergy(s, sk), shade, false});
        }
    }
    m_plot->setSeries(series, activations ? tr("singular value of M·S") : tr("singular value of M"));
    const int layer = m_layer->currentData().toInt();
    m_plot->setHighlighted(layer < 0 ? -1 : (k == Split ? 2 * layer : layer));
    refreshCursor();
}

void SpectrumView::refreshCursor()
{
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    const AnalysisPtr& a = m_workbench->analysis();
    if (!a)
        return;
    const Kind k = kind();
    const view::SpectrumKind sk = spectrumKind(k);
    const int layer = m_layer->currentData().toInt();
    const ConversionSettings& settings = m_workbench->settings();
    const ConversionPreview& p = m_workbench->preview();
    std::int64_t latent = m_workbench->resolvedLatent();
    if (layer >= 0 && static_cast<std::size_t>(layer) < p.layers.size())
        latent = p.layers[static_cast<std::size_t>(layer)].latentK + p.layers[static_cast<std::size_t>(layer)].latentV;
    const bool cursor = settings.method != LatentMethod::None && (view::methodUsesSpectrum(settings.method, sk) || (k == Split && settings.method == LatentMethod::Split));
    const ModelConfig* c = m_workbench->config();
    if (c) {
        const LatentRange range = latentRange(*c, m_workbench->resolvedRopePairs(), settings.method);
        m_plot->setRankLimits(view::rankForLatent(settings.method, sk, range.minimum), view::rankForLatent(settings.method, sk, range.maximum));
    }
    m_plot->setRankCursor(view::rankForLatent(settings.method, sk, latent), cursor);

    QString text;
    if (m_workbench->previewIsStale())
        text = tr("The kept pairs changed since these spectra were computed; they are being recomputed.") + QLatin1Char(' ');
    if (cursor)
        text += tr("Drag the cursor to set the latent width d_c%1: the energy above it is what the latent drops.")
                    .arg(layer >= 0 ? tr(" of layer %1").arg(layer) : QString());
    else if (settings.method == LatentMethod::None)
        text += tr("The method is none: nothing is truncated.");
    else
        text += tr("The %1 method does not truncate this spectrum; pick %2 to see the rank cursor.")
                    .arg(QString::fromUtf8(latentMethodName(settings.method).data()))
                    .arg(settings.method == LatentMethod::Joint ? tr("Joint") : tr("Key, Value or Split"));
    m_caption->setText(text);
}

void SpectrumView::onRankDragged(qint64 rank)
{
    const view::SpectrumKind sk = spectrumKind(kind());
    const std::int64_t latent = view::latentForRank(m_workbench->settings().method, sk, rank);
    const int layer = m_layer->currentData().toInt();
    if (layer >= 0)
        m_workbench->setLayerLatent(layer, latent, kMergeCursor + 1 + layer);
    else
        m_workbench->setGlobalLatent(latent, kMergeCursor);
}

} // namespace mla
