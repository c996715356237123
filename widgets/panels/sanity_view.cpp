#include "panels/sanity_view.h"

#include "document/workbench.h"
#include "models/generation_model.h"
#include "models/sanity_metrics_model.h"

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
#include <QVBoxLayout>

namespace mla {

SanityView::SanityView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_prompt = new QLineEdit(this);
    m_prompt->setPlaceholderText(tr("a prompt for the side-by-side generations (empty: start from BOS)"));
    m_prompt->setText(QStringLiteral("Once upon a time"));
    m_prompt->setToolTip(tr("Both models continue this prompt greedily (temperature 0), so any difference comes from the conversion"));
    m_steps = new QSpinBox(this);
    m_steps->setRange(4, 4096);
    m_steps->setValue(64);
    m_steps->setToolTip(tr("Positions to run, BOS and prompt included"));
    m_sequences = new QSpinBox(this);
    m_sequences->setRange(1, 256);
    m_sequences->setValue(4);
    m_sequences->setToolTip(tr("Held-out sequences sampled from the original model (their own seed) for perplexity, KL and agreement"));
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
    controls->addWidget(m_prompt, 1);
    controls->addWidget(new QLabel(tr("Steps:"), this));
    controls->addWidget(m_steps);
    controls->addWidget(new QLabel(tr("Eval sequences:"), this));
    controls->addWidget(m_sequences);
    controls->addWidget(m_run);

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
    layout->addWidget(m_status);
    layout->addWidget(bottom, 1);

    connect(m_run, &QPushButton::clicked, this, &SanityView::runCheck);
    connect(m_prompt, &QLineEdit::returnPressed, this, &SanityView::runCheck);
    auto syncOptions = [this] {
        CheckOptions o = m_workbench->sanityOptions();
        o.prompts = {m_prompt->text().toStdString()};
        o.generationSteps = m_steps->value();
        o.sequences = m_sequences->value();
        m_workbench->setSanityOptions(o);
    };
    connect(m_prompt, &QLineEdit::textChanged, this, syncOptions);
    connect(m_steps, &QSpinBox::valueChanged, this, syncOptions);
    connect(m_sequences, &QSpinBox::valueChanged, this, syncOptions);
    syncOptions();
    connect(m_workbench, &Workbench::sanityChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::conversionChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::settingsChanged, this, &SanityView::refresh);
    connect(m_workbench, &Workbench::busyChanged, this, &SanityView::refresh);
    refresh();
}

void SanityView::runCheck()
{
    m_workbench->runSanityCheck();
}

void SanityView::refresh()
{
    const auto& sanity = m_workbench->sanity();
    m_metrics->setReport(sanity);
    const GenerationComparison* g = sanity && !sanity->generations.empty() ? &sanity->generations.front() : nullptr;
    m_generation->setComparison(g, m_workbench->hasModel() ? m_workbench->model().tokenizer.get() : nullptr);
    m_original->setHtml(sideHtml(false));
    m_converted->setHtml(sideHtml(true));
    m_run->setEnabled(m_workbench->conversion().has_value() && m_workbench->hasModel() && !m_workbench->isBusy());
    QString status;
    if (!m_workbench->conversion())
        status = tr("Convert the model (Run > Convert) to check it against the original.");
    else if (!m_workbench->conversionMatchesSettings())
        status = tr("The converted model was made with earlier settings; Convert again to check the current ones.");
    else if (!sanity)
        status = tr("The sanity check runs after each conversion.");
    if (g) {
        status += (status.isEmpty() ? QString() : QStringLiteral(" "))
            + (g->firstDifference < 0 ? tr("Both models generate the same %1 tokens.").arg(g->originalIds.size())
                                      : tr("The generations agree on the first %1 token(s); differing tokens are highlighted.")
                                            .arg(g->firstDifference));
    }
    m_status->setText(status);
}

QString SanityView::sideHtml(bool converted) const
{
    if (m_generation->rowCount() == 0 && m_generation->prompt().isEmpty())
        return QString();
    QString html = QStringLiteral("<p style='line-height:140%'><span style='color:#8a8a8a'><i>%1</i></span>")
                       .arg(m_generation->prompt().toHtmlEscaped());
    for (int row = 0; row < m_generation->rowCount(); ++row) {
        QString piece = m_generation->piece(row, converted).toHtmlEscaped();
        piece.replace(QLatin1Char('\n'), QStringLiteral("<br>"));
        if (m_generation->differs(row))
            html += QStringLiteral("<span style='background-color:#ffbf66; color:#000000'>%1</span>").arg(piece);
        else
            html += piece;
    }
    return html + QStringLiteral("</p>");
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
