#include "panels/run_bar.h"

#include "document/formatting.h"
#include "document/workbench.h"
#include "jobs/devices.h"

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
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_progress->setTextVisible(true);
    m_progress->setFormat(QStringLiteral("%p%"));
    m_progress->setMinimumWidth(200);
    m_stage = new QLabel(this);
    m_stage->setMinimumWidth(180);
    m_eta = new QLabel(this);
    m_eta->setMinimumWidth(110);
    m_eta->setToolTip(tr("Estimated time left, from the progress rate so far"));
    m_cancel = new QPushButton(style()->standardIcon(QStyle::SP_BrowserStop), tr("Cancel"), this);
    m_cancel->setToolTip(tr("Stop the running job; nothing it produced is kept (Esc)"));

    layout->addWidget(deviceLabel);
    layout->addWidget(m_device);
    layout->addSpacing(12);
    layout->addWidget(m_analyze);
    layout->addWidget(m_convert);
    layout->addSpacing(12);
    layout->addWidget(m_progress, 1);
    layout->addWidget(m_stage);
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
    m_progress->setValue(0);
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
    m_eta->setText(tr("estimating…"));
    updateButtons();
}

void RunBar::onProgress(double fraction, const QString& stage, double eta)
{
    m_progress->setValue(static_cast<int>(fraction * 1000.0));
    m_stage->setText(stage);
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
