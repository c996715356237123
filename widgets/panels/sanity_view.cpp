#include "panels/sanity_view.h"

#include "document/workbench.h"
#include "models/generation_model.h"
#include "models/sanity_metrics_model.h"
#include "panels/notice_label.h"

#include "util/error.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QEvent>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableView>
#include <QTextBrowser>
#include <QSignalBlocker>
#include <QStandardItemModel>
#include <QVBoxLayout>

namespace mla {

SanityView::SanityView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_prompt = new QLineEdit(this);
    m_prompt->setPlaceholderText(tr("a prompt for the side-by-side generations (empty: start from BOS)"));
    m_prompt->setText(QStringLiteral("Once upon a time"));
    m_prompt->setToolTip(tr("Both models continue this prompt, greedily or sampled with the same seed, so any difference comes "
                            "from the conversion"));
    m_promptMode = new QComboBox(this);
    m_promptMode->addItem(tr("text"), false);
    m_promptMode->addItem(tr("token ids"), true);
    m_promptMode->setToolTip(tr("Token ids (\"1 403 22\") work without a tokenizer; the continuations are then shown as ids"));
    m_steps = new QSpinBox(this);
    m_steps->setRange(4, 4096);
    m_steps->setValue(64);
    m_steps->setToolTip(tr("Maximum positions to run, BOS and prompt included (llama2.c's steps); a generation also stops at "
                           "BOS or EOS"));
    m_temperature = new QDoubleSpinBox(this);
    m_temperature->setRange(0.0, 2.0);
    m_temperature->setSingleStep(0.1);
    m_temperature->setDecimals(2);
    m_temperature->setValue(0.0);
    m_temperature->setToolTip(tr("0: greedy (the most likely token each step). Above 0 both models sample with the same seed, "
                                 "so they draw the same random numbers"));
    m_topP = new QDoubleSpinBox(this);
    m_topP->setRange(0.01, 1.0);
    m_topP->setSingleStep(0.05);
    m_topP->setDecimals(2);
    m_topP->setValue(0.9);
    m_topP->setToolTip(tr("Nucleus sampling: draw from the smallest set of tokens whose probabilities add up to this (1: all)"));
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, 2147483647);
    m_seed->setValue(42);
    m_seed->setToolTip(tr("Seed of the sampler, the same for both models"));
    m_promptWarning = new NoticeLabel(Tone::Error, this);
    m_promptWarning->hide();
    m_sequences = new QSpinBox(this);
    m_sequences->setRange(1, 256);
    m_sequences->setValue(4);
    m_sequences->setToolTip(tr("Held-out sequences sampled from the original model (their own seed) for perplexity, KL and agreement"));
    m_cache = new QComboBox(this);
    m_ropeCache = new QComboBox(this);
    m_ropeCache->addItem(tr("default"), QString());
    for (CacheFormat f : {CacheFormat::F32, CacheFormat::BF16, CacheFormat::Int8, CacheFormat::Int4}) {
        const QString name = QString::fromUtf8(cacheFormatName(f).data());
        m_cache->addItem(name, name);
        m_ropeCache->addItem(name, name);
    }
    m_cache->setCurrentIndex(m_cache->findData(QStringLiteral("int8")));
    m_cache->setToolTip(tr("How the converted model's KV cache stores the latent(s) (--kv-cache). The check measures the "
                           "converted model with this cache next to a float32 one, and the bytes the engine allocates for it"));
    m_ropeCache->setToolTip(tr("How the RoPE keys are stored (--kv-cache-rope). Default: int8 under an int4 latent (int4 RoPE "
                               "keys cost far more quality, docs/kv-cache.md), else the latent's own format"));
    m_cacheGroup = new QSpinBox(this);
    m_cacheGroup->setRange(1, static_cast<int>(kMaxCacheGroupSize));
    m_cacheGroup->setValue(static_cast<int>(kDefaultCacheGroupSize));
    m_cacheGroup->setToolTip(tr("Elements per quantisation group (one F16 scale and minimum each) of the int8 / int4 parts "
                                "(--kv-cache-group); a row narrower than the group is one group"));
    m_run = new QPushButton(tr("Run check"), this);
    m_run->setToolTip(tr("Run the sanity check on the converted model"));
    m_status = new QLabel(this);
    m_status->setWordWrap(true);

    m_metrics = new SanityMetricsModel(this);
    m_metricsView = new QTableView(this);
    m_metricsView->setModel(m_metrics);
    m_metricsView->verticalHeader()->setVisible(false);
    m_metricsView->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_metricsView->horizontalHeader()->setStretchLastSection(true);
    m_metricsView->setSelectionMode(QAbstractItemView::NoSelection);
    m_metricsView->verticalHeader()->setDefaultSectionSize(m_metricsView->fontMetrics().height() + 8);

    m_generation = new GenerationModel(this);
    m_original = new QTextBrowser(this);
    m_converted = new QTextBrowser(this);
    m_tokens = new QTableView(this);
    m_tokens->setModel(m_generation);
    m_tokens->verticalHeader()->setVisible(false);
    m_tokens->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    m_tokens->horizontalHeader()->setSectionResizeMode(GenerationModel::PositionColumn, QHeaderView::ResizeToContents);

    auto* controls = new QHBoxLayout;
    controls->addWidget(new QLabel(tr("Prompt:"), this));
    controls->addWidget(m_promptMode);
    controls->addWidget(m_prompt, 1);
    controls->addWidget(new QLabel(tr("Eval sequences:"), this));
    controls->addWidget(m_sequences);
    controls->addWidget(m_run);
    auto* samplingRow = new QHBoxLayout;
    samplingRow->addWidget(new QLabel(tr("Max tokens:"), this));
    samplingRow->addWidget(m_steps);
    samplingRow->addWidget(new QLabel(tr("Temperature:"), this));
    samplingRow->addWidget(m_temperature);
    samplingRow->addWidget(new QLabel(tr("Top-p:"), this));
    samplingRow->addWidget(m_topP);
    samplingRow->addWidget(new QLabel(tr("Seed:"), this));
    samplingRow->addWidget(m_seed);
    samplingRow->addStretch(1);
    auto* cacheRow = new QHBoxLayout;
    cacheRow->addWidget(new QLabel(tr("KV cache of the converted model:"), this));
    cacheRow->addWidget(m_cache);
    cacheRow->addWidget(new QLabel(tr("RoPE keys:"), this));
    cacheRow->addWidget(m_ropeCache);
    cacheRow->addWidget(new QLabel(tr("Group:"), this));
    cacheRow->addWidget(m_cacheGroup);
    cacheRow->addStretch(1);

    auto* originalBox = new QGroupBox(tr("Original"), this);
    (new QVBoxLayout(originalBox))->addWidget(m_original);
    auto* convertedBox = new QGroupBox(tr("Converted (MLA)"), this);
    (new QVBoxLayout(convertedBox))->addWidget(m_converted);
    auto* sideBySide = new QSplitter(Qt::Horizontal, this);
    sideBySide->addWidget(originalBox);
    sideBySide->addWidget(convertedBox);
    auto* bottom = new QSplitter(Qt::Vertical, this);
    bottom->addWidget(m_metricsView);
    bottom->addWidget(sideBySide);
    bottom->addWidget(m_tokens);
    bottom->setStretchFactor(0, 1);
    bottom->setStretchFactor(1, 2);
    bottom->setStretchFactor(2, 1);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(controls);
    layout->addWidget(m_promptWarning);
    layout->addLayout(samplingRow);
    layout->addLayout(cacheRow);
    layout->addWidget(m_status);
    layout->addWidget(bottom, 1);

    connect(m_run, &QPushButton::clicked, this, &SanityView::runCheck);
    connect(m_prompt, &QLineEdit::returnPressed, this, &SanityView::runCheck);
    connect(m_prompt, &QLineEdit::textChanged, this, &SanityView::syncOptions);
    connect(m_steps, &QSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_sequences, &QSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_cache, &QComboBox::currentIndexChanged, this, &SanityView::syncOptions);
    connect(m_ropeCache, &QComboBox::currentIndexChanged, this, &SanityView::syncOptions);
    connect(m_cacheGroup, &QSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_promptMode, &QComboBox::currentIndexChanged, this, &SanityView::syncOptions);
    connect(m_temperature, &QDoubleSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_topP, &QDoubleSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_seed, &QSpinBox::valueChanged, this, &SanityView::syncOptions);
    connect(m_workbench, &Workbench::modelChanged, this, &SanityView::followModel);
    followModel();
    syncOptions();
    connect(m_workbench, &Workbench::sanityChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::conversionChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::settingsChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::busyChanged, this, &SanityView::refresh);
    refresh();
}

void SanityView::followModel()
{
    const bool hasTokenizer = m_workbench->hasModel() && m_workbench->model().tokenizer;
    // Without a tokenizer only ids can be given (the text item is disabled, not removed, so the choice stays visible).
    if (auto* items = qobject_cast<QStandardItemModel*>(m_promptMode->model()))
        items->item(0)->setEnabled(hasTokenizer || !m_workbench->hasModel());
    if (m_workbench->hasModel() && !hasTokenizer && m_promptMode->currentIndex() == 0) {
        const QSignalBlocker block(m_prompt);
        try {
            (void)parsePromptIds(m_prompt->text().toStdString(), m_workbench->model().model->config.vocab);
        } catch (const Error&) {
            m_prompt->clear(); // text: start from BOS instead
        }
        m_promptMode->setCurrentIndex(1);
    }
    syncOptions();
}

void SanityView::syncOptions()
{
    CheckOptions o = m_workbench->sanityOptions();
    o.prompts = {m_prompt->text().toStdString()};
    o.promptsAreIds = m_promptMode->currentData().toBool();
    o.generationSteps = m_steps->value();
    o.sequences = m_sequences->value();
    o.temperature = static_cast<float>(m_temperature->value());
    o.topP = static_cast<float>(m_topP->value());
    o.samplingSeed = static_cast<std::uint64_t>(m_seed->value());
    m_topP->setEnabled(o.temperature > 0.0f);
    m_seed->setEnabled(o.temperature > 0.0f);
    m_prompt->setPlaceholderText(o.promptsAreIds ? tr("token ids, e.g. 1 403 22 (empty: start from BOS)")
                                                 : tr("a prompt for the side-by-side generations (empty: start from BOS)"));
    const QString latent = m_cache->currentData().toString();
    const QString rope = m_ropeCache->currentData().toString();
    auto quantised = [](const QString& name) { return name.startsWith(QStringLiteral("int")); };
    // The group only means something for a quantised part; the RoPE default of int4 is int8, quantised too.
    const bool grouped = quantised(latent) || quantised(rope);
    m_cacheGroup->setEnabled(grouped);
    m_optionsProblem.clear();
    QString warning;
    const Tokenizer* tokenizer = m_workbench->hasModel() ? m_workbench->model().tokenizer.get() : nullptr;
    try {
        // The prompt as the check will read it (core's rule), so a problem shows before the button is pressed.
        if (m_workbench->hasModel())
            (void)sanityStartIds(m_workbench->model().model->config, tokenizer, o.prompts.front(), o.promptsAreIds);
        if (tokenizer && !o.promptsAreIds) {
            if (const std::int64_t unknown = unknownPromptTokens(*tokenizer, o.prompts.front()); unknown > 0)
                warning = tr("The tokenizer has no token for part of this prompt: %n token(s) become <unk>, so the models "
                             "continue something other than what you wrote.", nullptr, static_cast<int>(unknown));
        }
        o.cacheFormat = kvCacheFormatFromSettings(latent.toStdString(), rope.toStdString(), grouped ? m_cacheGroup->value() : 0);
    } catch (const Error& e) {
        m_optionsProblem = QString::fromUtf8(e.what());
    }
    m_promptWarning->setText(warning);
    m_promptWarning->setVisible(!warning.isEmpty());
    m_workbench->setSanityOptions(o);
    refresh();
}

QString SanityView::promptWarning() const
{
    return m_promptWarning->text();
}

void SanityView::runCheck()
{
    if (!m_optionsProblem.isEmpty())
        return;
    m_workbench->runSanityCheck();
}

QString SanityView::statusText() const
{
    return m_status->text();
}

void SanityView::refresh()
{
    const auto& sanity = m_workbench->sanity();
    m_metrics->setReport(sanity);
    const GenerationComparison* g = sanity && !sanity->generations.empty() ? &sanity->generations.front() : nullptr;
    m_generation->setComparison(g, m_workbench->hasModel() ? m_workbench->model().tokenizer.get() : nullptr);
    m_original->setHtml(sideHtml(false));
    m_converted->setHtml(sideHtml(true));
    m_run->setEnabled(m_workbench->conversion().has_value() && m_workbench->hasModel() && !m_workbench->isBusy()
                      && m_optionsProblem.isEmpty());
    QString status;
    if (!m_optionsProblem.isEmpty())
        status = tr("These check settings cannot be used: %1").arg(m_optionsProblem);
    else if (!m_workbench->conversion())
        status = tr("Convert the model (Run > Convert) to check it against the original.");
    else if (!m_workbench->conversionMatchesSettings())
        status = tr("The converted model was made with earlier settings; Convert again to check the current ones.");
    else if (!sanity)
        status = tr("The sanity check runs after each conversion.");
    else if (sanity->withCache.format != kvCacheFormatName(m_workbench->sanityOptions().cacheFormat))
        status = tr("The results are for a %1 cache; Run check to measure %2.")
                     .arg(QString::fromStdString(sanity->withCache.format),
                          QString::fromStdString(kvCacheFormatName(m_workbench->sanityOptions().cacheFormat)));
    if (g) {
        status += (status.isEmpty() ? QString() : QStringLiteral(" "))
            + (g->firstDifference < 0 ? tr("Both models generate the same %1 tokens.").arg(g->originalIds.size())
                                      : tr("The generations agree on the first %1 token(s) and share %2 of their %3 | %4 tokens in "
                                           "order (aligned by longest common subsequence); the others are highlighted.")
                                            .arg(g->firstDifference)
                                            .arg(m_generation->commonTokens())
                                            .arg(g->originalIds.size())
                                            .arg(g->convertedIds.size()));
    }
    if (g && g->unknownTokens > 0)
        status += tr(" The tokenizer turned %n token(s) of this prompt into <unk>.", nullptr, static_cast<int>(g->unknownTokens));
    m_status->setText(status);
}

QString SanityView::sideHtml(bool converted) const
{
    if (m_generation->rowCount() == 0 && m_generation->prompt().isEmpty())
        return QString();
    const bool hasTokenizer = m_workbench->hasModel() && m_workbench->model().tokenizer;
    // Colours from the palette (re-rendered when it changes): the prompt as secondary text, a differing token on a
    // mark the palette's text reads on.
    const QPalette& pal = palette();
    QString html = QStringLiteral("<p style='line-height:140%'><span style='color:%1'><i>%2</i></span>")
                       .arg(secondaryText(pal).name(), m_generation->prompt().toHtmlEscaped());
    const QString mark = QStringLiteral("<span style='background-color:%1; color:%2'>%3</span>")
                             .arg(differenceBackground(pal).name(), pal.color(QPalette::Text).name());
    for (int row = 0; row < m_generation->rowCount(); ++row) {
        const AlignOp op = m_generation->op(row);
        if (op == (converted ? AlignOp::OnlyFirst : AlignOp::OnlySecond))
            continue; // a token only the other side has
        QString piece = m_generation->piece(row, converted).toHtmlEscaped();
        piece.replace(QLatin1Char('\n'), QStringLiteral("<br>"));
        if (!hasTokenizer)
            piece += QLatin1Char(' '); // ids, "[12] [44]"
        if (m_generation->differs(row))
            html += mark.arg(piece);
        else
            html += piece;
    }
    return html + QStringLiteral("</p>");
}

void SanityView::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange && m_original) { // the sides' colours come from the palette
        m_original->setHtml(sideHtml(false));
        m_converted->setHtml(sideHtml(true));
    }
}

QString SanityView::originalHtml() const
{
    return m_original->toHtml();
}

QString SanityView::convertedHtml() const
{
    return m_converted->toHtml();
}

} // namespace mla
