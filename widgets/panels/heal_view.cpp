#include "panels/heal_view.h"

#include "document/workbench.h"
#include "plots/bar_plot.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <limits>

namespace mla {
namespace {

QString number(double v, int digits = 4)
{
    return QString::number(v, 'g', digits);
}

} // namespace

HealView::HealView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    const HealOptions defaults;
    m_steps = new QSpinBox(this);
    m_steps->setRange(1, 1000000);
    m_steps->setValue(static_cast<int>(defaults.steps));
    m_steps->setToolTip(tr("AdamW steps per layer (at most: a layer stops early when its held-out loss stops improving)"));
    m_tokens = new QSpinBox(this);
    m_tokens->setRange(16, 1 << 26);
    m_tokens->setSingleStep(1024);
    m_tokens->setValue(static_cast<int>(defaults.data.tokens));
    m_tokens->setToolTip(tr("Tokens sampled from the original model to heal on (1/8 held out to measure with)"));
    m_sequenceLength = new QSpinBox(this);
    m_sequenceLength->setRange(8, 1 << 16);
    m_sequenceLength->setValue(static_cast<int>(defaults.data.sequenceLength));
    m_sequenceLength->setToolTip(tr("Tokens per sequence (capped at the model's context)"));
    m_learningRate = new QDoubleSpinBox(this);
    m_learningRate->setDecimals(5);
    m_learningRate->setRange(0.0, 10.0);
    m_learningRate->setSingleStep(0.0005);
    m_learningRate->setSpecialValueText(tr("auto"));
    m_learningRate->setValue(0.0);
    m_learningRate->setToolTip(tr("Peak AdamW learning rate; auto: %1 × the RMS of each layer's query weights").arg(defaults.relativeLearningRate));
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, std::numeric_limits<int>::max());
    m_seed->setValue(static_cast<int>(defaults.seed));
    m_seed->setToolTip(tr("Seed of the sampled data and the batch order: the same seed gives the same healed weights"));
    m_start = new QComboBox(this);
    m_start->addItem(tr("the conversion"), -1);
    m_start->addItem(tr("auto"), static_cast<int>(HealStart::Auto));
    m_start->addItem(tr("paper split"), static_cast<int>(HealStart::Paper));
    m_start->setToolTip(tr("What is healed: the conversion as made; auto: with an allocated conversion, heal it and the uniform "
                           "paper split at the same budget and keep the better; paper: that split only (docs/healing.md)"));
    m_onStop = new QComboBox(this);
    m_onStop->addItem(tr("keep healed layers"), true);
    m_onStop->addItem(tr("discard the heal"), false);
    m_onStop->setToolTip(tr("What Stop leaves: a layer is installed only when finished, so the model is always consistent"));

    m_heal = new QPushButton(tr("Heal"), this);
    m_heal->setToolTip(tr("Heal the converted model layer by layer (Run > Heal)"));
    m_stop = new QPushButton(tr("Stop"), this);
    m_check = new QPushButton(tr("Check healed"), this);
    m_check->setToolTip(tr("Run the sanity check (the Sanity check tab's settings) on the healed model"));
    m_cost = new QLabel(this);
    m_cost->setWordWrap(true);
    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_progress = new QProgressBar(this);
    m_progress->setTextVisible(true);

    m_plot = new BarPlot(this);
    m_plot->setTitle(tr("Held-out block loss per layer"));
    m_plot->setPlaceholder(tr("Heal the converted model to see each layer's held-out loss before and after"));
    m_results = new QTableWidget(0, 3, this);
    m_results->setHorizontalHeaderLabels({tr("Measure"), tr("Unhealed"), tr("Healed")});
    m_results->verticalHeader()->setVisible(false);
    m_results->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_results->horizontalHeader()->setStretchLastSection(true);
    m_results->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_results->setSelectionMode(QAbstractItemView::NoSelection);

    auto* form = new QFormLayout;
    form->addRow(tr("Steps per layer:"), m_steps);
    form->addRow(tr("Tokens:"), m_tokens);
    form->addRow(tr("Sequence length:"), m_sequenceLength);
    form->addRow(tr("Learning rate:"), m_learningRate);
    form->addRow(tr("Seed:"), m_seed);
    form->addRow(tr("Heal:"), m_start);
    form->addRow(tr("Stop:"), m_onStop);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_heal);
    buttons->addWidget(m_stop);
    buttons->addWidget(m_check);
    buttons->addStretch(1);
    auto* settingsBox = new QGroupBox(tr("Block-wise distillation"), this);
    auto* settingsLayout = new QVBoxLayout(settingsBox);
    settingsLayout->addLayout(form);
    settingsLayout->addLayout(buttons);
    settingsLayout->addWidget(m_cost);
    settingsLayout->addStretch(1);

    auto* right = new QSplitter(Qt::Vertical, this);
    right->addWidget(m_plot);
    right->addWidget(m_results);
    right->setStretchFactor(0, 2);
    right->setStretchFactor(1, 1);
    auto* top = new QHBoxLayout;
    top->addWidget(settingsBox);
    top->addWidget(right, 1);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_progress);
    layout->addWidget(m_status);
    layout->addLayout(top, 1);

    for (QSpinBox* spin : {m_steps, m_tokens, m_sequenceLength, m_seed})
        connect(spin, &QSpinBox::valueChanged, this, &HealView::applyOptions);
    connect(m_learningRate, &QDoubleSpinBox::valueChanged, this, &HealView::applyOptions);
    connect(m_start, &QComboBox::currentIndexChanged, this, &HealView::applyOptions);
    connect(m_heal, &QPushButton::clicked, this, [this] {
        resetLive();
        m_workbench->healConversion();
    });
    connect(m_stop, &QPushButton::clicked, this, [this] { m_workbench->stopHeal(m_onStop->currentData().toBool()); });
    connect(m_check, &QPushButton::clicked, m_workbench, &Workbench::runHealedSanityCheck);
    connect(m_workbench, &Workbench::healStepped, this, &HealView::onStep);
    connect(m_workbench, &Workbench::healChanged, this, [this] {
        const auto& heal = m_workbench->heal();
        if (heal) { // e.g. from a session: show its settings
            const QSignalBlocker b1(m_steps), b2(m_tokens), b3(m_sequenceLength), b4(m_learningRate), b5(m_seed);
            m_steps->setValue(static_cast<int>(heal->options.steps));
            m_tokens->setValue(static_cast<int>(heal->options.data.tokens));
            m_sequenceLength->setValue(static_cast<int>(heal->options.data.sequenceLength));
            m_learningRate->setValue(heal->options.learningRate.value_or(0.0));
            m_seed->setValue(static_cast<int>(heal->options.seed));
        }
        m_live = false;
        refresh();
    });
    connect(m_workbench, &Workbench::modelChanged, this, [this] {
        m_live = false; // a live plot of the last model's heal (stopped) is not this model's
        m_liveBefore.clear();
        m_liveAfter.clear();
        refresh();
    });
    for (auto signal : {&Workbench::conversionChanged, &Workbench::sanityChanged})
        connect(m_workbench, signal, this, &HealView::refresh);
    connect(m_workbench, &Workbench::busyChanged, this, &HealView::refresh);
    connect(m_workbench, &Workbench::jobProgress, this, [this](double, const QString& stage, double eta) {
        if (!m_workbench->isHealing())
            return;
        QString text = stage;
        if (eta >= 0)
            text += tr(" — about %1 s left").arg(eta, 0, 'f', 0);
        m_status->setText(text);
    });
    applyOptions();
    refresh();
}

void HealView::applyOptions()
{
    HealOptions o = m_workbench->healOptions();
    o.steps = m_steps->value();
    o.data.tokens = m_tokens->value();
    o.data.sequenceLength = m_sequenceLength->value();
    if (m_learningRate->value() > 0.0)
        o.learningRate = m_learningRate->value();
    else
        o.learningRate.reset();
    o.seed = static_cast<std::uint64_t>(m_seed->value());
    m_workbench->setHealOptions(o);
    const int start = m_start->currentData().toInt();
    m_workbench->setHealStart(start < 0 ? std::nullopt : std::optional<HealStart>(static_cast<HealStart>(start)));
    refreshCost();
}

QString HealView::costText() const
{
    return m_cost->text();
}

QString HealView::statusText() const
{
    return m_status->text();
}

void HealView::refreshCost()
{
    const ModelConfig* c = m_workbench->config();
    if (!c) {
        m_cost->clear();
        return;
    }
    const HealOptions& o = m_workbench->healOptions();
    const std::int64_t length = std::min<std::int64_t>(o.data.sequenceLength, c->maxPositions > 0 ? c->maxPositions : o.data.sequenceLength);
    const std::int64_t sequences = std::max<std::int64_t>(1, o.data.tokens / std::max<std::int64_t>(1, length));
    const std::int64_t perStep = std::min(o.batchSequences, sequences) * length;
    const double tokenSteps = static_cast<double>(c->layers) * static_cast<double>(o.steps) * static_cast<double>(perStep);
    const int starts = m_workbench->healStart() && *m_workbench->healStart() == HealStart::Auto ? 2 : 1;
    m_cost->setText(tr("Expected work: %1 layers × up to %2 steps × %3 tokens per step = %4 M token-steps%5 (each about 2.2 "
                       "forward passes of one layer), on %6 tokens in sequences of up to %7 (samples are drawn until "
                       "they hold them; 1/8 held out); the model's KL is "
                       "measured before and after. Runs on the CPU (all cores); the time left shows once it runs.")
                       .arg(c->layers)
                       .arg(o.steps)
                       .arg(perStep)
                       .arg(tokenSteps / 1e6, 0, 'f', 2)
                       .arg(starts > 1 ? tr(" for each of 2 starts") : QString())
                       .arg(o.data.tokens)
                       .arg(length));
}

void HealView::resetLive()
{
    const ModelConfig* c = m_workbench->config();
    const std::size_t layers = c ? static_cast<std::size_t>(c->layers) : 0;
    m_live = true;
    m_liveStart.clear();
    m_liveBefore.assign(layers, -1.0);
    m_liveAfter.assign(layers, -1.0);
    m_liveLayer = 0;
    m_liveStep = 0;
    m_liveSteps = 0;
    plotLosses();
}

void HealView::onStep(const HealProgress& p, const QString& start)
{
    if (!m_live || (p.layer == 0 && p.step == 0) || start != m_liveStart)
        resetLive(); // a new heal, or the next start of `auto`
    m_liveStart = start;
    const auto l = static_cast<std::size_t>(p.layer);
    if (l >= m_liveBefore.size())
        return;
    m_liveLayer = p.layer;
    m_liveStep = p.step;
    m_liveSteps = p.steps;
    bool replot = false;
    if (p.step == 0 && p.heldOutLoss) {
        m_liveBefore[l] = *p.heldOutLoss;
        replot = true;
    }
    if (p.finished) {
        m_liveBefore[l] = p.finished->heldOutBefore;
        m_liveAfter[l] = p.finished->heldOutAfter;
        replot = true;
    } else if (p.step > 0 && p.heldOutLoss) {
        const double best = m_liveAfter[l] < 0 ? m_liveBefore[l] : m_liveAfter[l];
        m_liveAfter[l] = best < 0 ? *p.heldOutLoss : std::min(best, *p.heldOutLoss);
        replot = true;
    }
    const int layers = static_cast<int>(m_liveBefore.size());
    m_progress->setRange(0, layers * 1000);
    const double within = p.finished ? 1.0 : (p.steps > 0 ? static_cast<double>(p.step) / static_cast<double>(p.steps) : 0.0);
    m_progress->setValue(static_cast<int>((static_cast<double>(p.layer) + within) * 1000.0));
    m_progress->setFormat(tr("%1layer %2 of %3, step %4 of %5")
                              .arg(start.isEmpty() ? QString() : start + QStringLiteral(": "))
                              .arg(p.layer + 1)
                              .arg(layers)
                              .arg(p.step)
                              .arg(p.steps));
    if (replot)
        plotLosses();
}

void HealView::plotLosses()
{
    std::vector<double> before, after;
    if (m_live) {
        before = m_liveBefore;
        after = m_liveAfter;
    } else if (const auto& heal = m_workbench->heal()) {
        const ModelConfig* c = m_workbench->config();
        const std::size_t layers = c ? static_cast<std::size_t>(c->layers) : heal->report.layers.size();
        before.assign(layers, -1.0);
        after.assign(layers, -1.0);
        for (const LayerHealReport& r : heal->report.layers) {
            if (static_cast<std::size_t>(r.layer) < layers) {
                before[static_cast<std::size_t>(r.layer)] = r.heldOutBefore;
                after[static_cast<std::size_t>(r.layer)] = r.heldOutAfter;
            }
        }
    }
    if (before.empty()) {
        m_plot->setPlaceholder(!m_workbench->config()        ? tr("Open a model to begin")
                               : !m_workbench->conversion() ? tr("Convert (Ctrl+R), then Heal: each layer's held-out loss before and after healing shows here")
                                                            : tr("Heal to see each layer's held-out loss before and after healing"));
        m_plot->setData({}, {}, tr("layer"), tr("held-out loss"));
        return;
    }
    QStringList categories;
    for (std::size_t l = 0; l < before.size(); ++l)
        categories << QString::number(l);
    m_plot->setData(categories, {{tr("before healing"), before}, {tr("after healing"), after}}, tr("layer"),
                    tr("held-out block loss (MSE / mean squared target)"));
}

void HealView::refresh()
{
    const bool healing = m_workbench->isHealing();
    const bool busy = m_workbench->isBusy();
    const bool converted = m_workbench->conversion().has_value() && m_workbench->hasModel();
    const QString unavailable = m_workbench->healUnavailableReason();
    m_heal->setEnabled(converted && !busy && unavailable.isEmpty());
    m_heal->setToolTip(unavailable.isEmpty() ? tr("Heal the converted model layer by layer (Run > Heal)") : unavailable);
    m_stop->setEnabled(healing);
    m_check->setEnabled(m_workbench->healedConversion().has_value() && !busy);
    for (QWidget* w : std::initializer_list<QWidget*>{m_steps, m_tokens, m_sequenceLength, m_learningRate, m_seed, m_start})
        w->setEnabled(!healing);
    refreshCost();
    if (!healing) {
        const auto& heal = m_workbench->heal();
        if (!converted && !heal)
            m_status->setText(tr("Convert the model (Run > Convert) to heal it."));
        else if (!unavailable.isEmpty())
            m_status->setText(unavailable);
        else if (!heal)
            m_status->setText(tr("Healing trains each converted layer, in order, to give the original layer's output on "
                                 "text sampled from the original (docs/healing.md)."));
        else {
            const HealReport& r = heal->report;
            QString text = tr("Healed %1 layer(s) from the %2 start%3 in %4 s.")
                               .arg(r.layersHealed)
                               .arg(QString::fromStdString(heal->start))
                               .arg(r.cancelled ? tr(" (stopped early: the other layers as converted)") : QString())
                               .arg(r.seconds, 0, 'f', 1);
            if (!m_workbench->healedConversion())
                text += tr(" From the session: the healed weights are not stored there; Heal again to export a healed model.");
            else
                text += tr(" Export writes the healed model.");
            m_status->setText(text);
        }
        refreshProgress();
        if (!m_live)
            plotLosses();
    }
    refreshResults();
}

void HealView::refreshProgress()
{
    // Between heals the bar says what the current state holds, never a heal that is gone: the last heal of this
    // conversion (from a session too), else empty (nothing healed yet, or a conversion that has no heal).
    const auto& heal = m_workbench->heal();
    if (heal && m_workbench->healUnavailableReason().isEmpty()) {
        const HealReport& r = heal->report;
        const ModelConfig* c = m_workbench->config();
        const int layers = c ? static_cast<int>(c->layers) : static_cast<int>(r.layers.size());
        m_progress->setRange(0, std::max(1, layers));
        m_progress->setValue(static_cast<int>(r.layersHealed));
        m_progress->setFormat(tr("%1 of %2 layers healed").arg(r.layersHealed).arg(layers));
        return;
    }
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_progress->setFormat(!m_workbench->healUnavailableReason().isEmpty() ? tr("no heal for this conversion") : tr("not healed"));
}

void HealView::refreshResults()
{
    struct Row {
        QString name;
        QString unhealed;
        QString healed;
    };
    QList<Row> rows;
    const auto& heal = m_workbench->heal();
    if (heal && heal->report.before && heal->report.after) {
        const HealQuality& b = *heal->report.before;
        const HealQuality& a = *heal->report.after;
        rows.append({tr("Held-out KL (nats/token)"), number(b.kl), number(a.kl)});
        rows.append({tr("Held-out perplexity (original %1)").arg(number(b.originalPerplexity)), number(b.perplexity), number(a.perplexity)});
        rows.append({tr("Held-out top-1 agreement"), number(b.top1Agreement), number(a.top1Agreement)});
    }
    const auto& unhealed = m_workbench->sanity();
    const SanityReport* healed = heal && heal->sanity ? &*heal->sanity : nullptr;
    if (unhealed || healed) {
        auto cell = [](const SanityReport* r, double SanityReport::*member) { return r ? number(r->*member) : QStringLiteral("—"); };
        const SanityReport* u = unhealed ? &*unhealed : nullptr;
        const double original = u ? u->originalPpl : healed->originalPpl;
        rows.append({tr("Sanity check: KL (nats/token)"), cell(u, &SanityReport::kl), cell(healed, &SanityReport::kl)});
        rows.append({tr("Sanity check: perplexity (original %1)").arg(number(original)), cell(u, &SanityReport::convertedPpl),
                     cell(healed, &SanityReport::convertedPpl)});
        rows.append({tr("Sanity check: top-1 agreement"), cell(u, &SanityReport::top1Agreement), cell(healed, &SanityReport::top1Agreement)});
        if (healed && !healed->generations.empty())
            rows.append({tr("Sanity check: generation agrees for"),
                         u && !u->generations.empty() ? tr("%1 tokens").arg(u->generations[0].firstDifference < 0 ? u->generations[0].originalIds.size()
                                                                                                              : static_cast<std::size_t>(u->generations[0].firstDifference))
                                                      : QStringLiteral("—"),
                         tr("%1 tokens").arg(healed->generations[0].firstDifference < 0 ? healed->generations[0].originalIds.size()
                                                                                         : static_cast<std::size_t>(healed->generations[0].firstDifference))});
    }
    m_results->setRowCount(static_cast<int>(rows.size()));
    for (int i = 0; i < rows.size(); ++i) {
        m_results->setItem(i, 0, new QTableWidgetItem(rows[i].name));
        m_results->setItem(i, 1, new QTableWidgetItem(rows[i].unhealed));
        m_results->setItem(i, 2, new QTableWidgetItem(rows[i].healed));
    }
}

} // namespace mla
