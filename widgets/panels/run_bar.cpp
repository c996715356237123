#include "panels/run_bar.h"

#include "document/formatting.h"
#include "document/workbench.h"
#include "jobs/devices.h"
#include "pipeline/cost_estimate.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QStyle>

namespace mla {

RunBar::RunBar(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(8, 4, 8, 4);
    auto* deviceLabel = new QLabel(tr("Device:"), this);
    m_device = new QComboBox(this);
    for (const DeviceChoice& d : availableDevices()) {
        m_device->addItem(d.label, d.id);
        m_device->setItemData(m_device->count() - 1, d.details, Qt::ToolTipRole);
    }
    m_device->setToolTip(tr("Where analysis, conversion and the sanity check run."));
    deviceLabel->setBuddy(m_device);
    connect(m_device, &QComboBox::currentIndexChanged, this, [this](int i) { m_workbench->setDevice(m_device->itemData(i).toString()); });

    m_analyze = new QPushButton(style()->standardIcon(QStyle::SP_FileDialogContentsView), tr("Analyze"), this);
    m_analyze->setToolTip(tr("Calibrate, score every RoPE frequency pair and compute the key/value spectra (F5)"));
    m_convert = new QPushButton(style()->standardIcon(QStyle::SP_MediaPlay), tr("Convert"), this);
    m_convert->setToolTip(tr("Convert the model to MLA with the current settings, then run the sanity check"));
    // What each will cost, before it starts (scaled from a measured forward probe; the tooltip says how).
    m_analyzeCost = new QLabel(this);
    m_convertCost = new QLabel(this);
    for (QLabel* l : {m_analyzeCost, m_convertCost})
        l->setForegroundRole(QPalette::PlaceholderText);
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_progress->setTextVisible(true);
    m_progress->setFormat(QStringLiteral("%p%"));
    // Narrow minimums, so that the bar fits a 1280-pixel window; the stage takes what room is left (its full text is
    // in its tooltip).
    m_progress->setMinimumWidth(120);
    m_stage = new QLabel(this);
    m_stage->setMinimumWidth(60);
    m_stage->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    m_eta = new QLabel(this);
    m_eta->setMinimumWidth(70);
    m_eta->setToolTip(tr("Estimated time left, from the progress rate so far"));
    m_cancel = new QPushButton(style()->standardIcon(QStyle::SP_BrowserStop), tr("Cancel"), this);
    m_cancel->setToolTip(tr("Stop the running job; nothing it produced is kept (Esc)"));

    layout->addWidget(deviceLabel);
    layout->addWidget(m_device);
    layout->addSpacing(12);
    layout->addWidget(m_analyze);
    layout->addWidget(m_analyzeCost);
    layout->addSpacing(6);
    layout->addWidget(m_convert);
    layout->addWidget(m_convertCost);
    layout->addSpacing(12);
    layout->addWidget(m_progress, 1);
    layout->addWidget(m_stage, 1);
    layout->addWidget(m_eta);
    layout->addWidget(m_cancel);

    connect(m_analyze, &QPushButton::clicked, m_workbench, &Workbench::analyze);
    connect(m_convert, &QPushButton::clicked, m_workbench, &Workbench::convert);
    connect(m_cancel, &QPushButton::clicked, m_workbench, &Workbench::cancel);
    connect(m_workbench, &Workbench::jobStarted, this, &RunBar::onStarted);
    connect(m_workbench, &Workbench::jobProgress, this, &RunBar::onProgress);
    connect(m_workbench, &Workbench::jobFinished, this, &RunBar::onFinished);
    connect(m_workbench, &Workbench::modelChanged, this, &RunBar::updateButtons);
    connect(m_workbench, &Workbench::busyChanged, this, &RunBar::updateButtons);
    connect(m_workbench, &Workbench::previewChanged, this, &RunBar::updateButtons);
    for (auto signal : {&Workbench::estimatesChanged, &Workbench::settingsChanged, &Workbench::analysisChanged, &Workbench::modelChanged})
        connect(m_workbench, signal, this, &RunBar::updateEstimates);
    m_progress->setValue(0);
    updateEstimates();
    updateButtons();
}

QString RunBar::etaText() const
{
    return m_eta->text();
}

QString RunBar::stageText() const
{
    return m_stage->text();
}

QString RunBar::analyzeCostText() const
{
    return m_analyzeCost->text();
}

QString RunBar::convertCostText() const
{
    return m_convertCost->text();
}

void RunBar::updateEstimates()
{
    const bool model = m_workbench->hasModel();
    auto show = [model](QLabel* label, const std::optional<pipeline::CostEstimate>& e, const QString& what) {
        if (!e) {
            label->setText(model ? tr("no estimate") : QString());
            label->setToolTip(model ? tr("No cost estimate for this model: the measured probe it scales from runs when the model opens, "
                                         "for models of up to 1 GiB of weights (for larger ones its forward pass would read the whole "
                                         "checkpoint from disk first).")
                                    : QString());
            return;
        }
        const QString time = e->seconds < 1.0 ? tr("< 1 s") : tr("≈ %1").arg(fmt::seconds(e->seconds));
        label->setText(tr("%1 · %2").arg(time, fmt::bytes(static_cast<double>(e->bytes))));
        QStringList parts;
        for (const std::string& p : e->parts)
            parts << QStringLiteral("• ") + QString::fromStdString(p);
        label->setToolTip(tr("<p><b>%1, estimated before it starts</b>: about %2 and %3 of memory beyond the open model.</p><p>%4</p><p><i>%5</i></p>")
                              .arg(what, fmt::seconds(e->seconds), fmt::bytes(static_cast<double>(e->bytes)), parts.join(QStringLiteral("<br>")),
                                   QString::fromStdString(e->basis).toHtmlEscaped()));
    };
    show(m_analyzeCost, m_workbench->analysisEstimate(), tr("Analyze"));
    show(m_convertCost, m_workbench->conversionEstimate(), tr("Convert"));
}

void RunBar::updateButtons()
{
    const bool busy = m_workbench->isBusy();
    // A job keeps the device it started on; changing it meanwhile would only look as if it applied.
    m_device->setEnabled(!busy);
    m_analyze->setEnabled(m_workbench->hasModel() && !busy);
    m_convert->setEnabled(m_workbench->hasModel() && !busy && m_workbench->preview().problem.empty());
    m_cancel->setEnabled(m_running > 0);
}

void RunBar::onStarted(const QString& title)
{
    ++m_running;
    m_elapsed.start();
    m_progress->setValue(0);
    m_stage->setText(title);
    m_stage->setToolTip(title);
    m_eta->setText(tr("estimating…"));
    updateButtons();
}

void RunBar::onProgress(double fraction, const QString& stage, double eta)
{
    m_progress->setValue(static_cast<int>(fraction * 1000.0));
    m_stage->setText(stage);
    m_stage->setToolTip(stage);
    m_eta->setText(eta >= 0 ? tr("%1 left").arg(fmt::seconds(eta)) : tr("estimating…"));
}

void RunBar::onFinished(const QString& title, bool ok)
{
    m_running = std::max(0, m_running - 1);
    if (m_running == 0) {
        m_progress->setValue(ok ? 1000 : 0);
        m_stage->setText(ok ? tr("%1: done").arg(title) : tr("%1: stopped").arg(title));
        m_eta->setText(m_elapsed.isValid() ? tr("took %1").arg(fmt::seconds(static_cast<double>(m_elapsed.elapsed()) / 1000.0)) : QString());
    }
    updateButtons();
}

} // namespace mla
