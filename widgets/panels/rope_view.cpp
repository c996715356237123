#include "panels/rope_view.h"

#include "document/workbench.h"
#include "plots/heatmap_plot.h"
#include "view_data/view_data.h"

#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QVBoxLayout>

namespace mla {

RopeView::RopeView(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_head = new QComboBox(this);
    m_head->setToolTip(tr("Show one KV head (its query heads' scores summed), or every KV head side by side"));
    m_measure = new QComboBox(this);
    m_measure->addItem(tr("2-norm score"), static_cast<int>(view::ScoreMeasure::TwoNorm));
    m_measure->addItem(tr("rotation loss"), static_cast<int>(view::ScoreMeasure::RotationLoss));
    m_measure->addItem(tr("query pair norm"), static_cast<int>(view::ScoreMeasure::QueryNorm));
    m_measure->addItem(tr("key pair norm"), static_cast<int>(view::ScoreMeasure::KeyNorm));
    m_measure->setToolTip(tr("<p><b>2-norm</b>: score<sub>kv</sub>[l,k,j] = Σ<sub>h∈k</sub> qn[l,h,j]·kn[l,k,j], with qn, kn the mean "
                             "‖q<sub>j</sub>‖, ‖k<sub>j</sub>‖ over calibration tokens: bounds how much pair j can move a logit.</p>"
                             "<p><b>rotation loss</b>: the expected squared logit change if pair j stopped rotating, over query–key "
                             "distances in the context: ≈0 for pairs that barely turn.</p>"));
    m_log = new QCheckBox(tr("Log colour scale"), this);
    m_log->setToolTip(tr("Scores span orders of magnitude: a logarithmic scale shows the small ones too"));
    m_caption = new QLabel(this);
    m_caption->setWordWrap(true);
    m_heatmap = new HeatmapPlot(this);

    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("KV head:"), this));
    bar->addWidget(m_head);
    bar->addSpacing(12);
    bar->addWidget(new QLabel(tr("Measure:"), this));
    bar->addWidget(m_measure);
    bar->addSpacing(12);
    bar->addWidget(m_log);
    bar->addStretch(1);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(bar);
    layout->addWidget(m_heatmap, 1);
    layout->addWidget(m_caption);

    connect(m_head, &QComboBox::currentIndexChanged, this, &RopeView::refresh);
    connect(m_measure, &QComboBox::currentIndexChanged, this, &RopeView::refresh);
    connect(m_log, &QCheckBox::toggled, m_heatmap, &HeatmapPlot::setLogScale);
    connect(m_heatmap, &HeatmapPlot::logScaleChanged, m_log, &QCheckBox::setChecked);
    connect(m_workbench, &Workbench::modelChanged, this, &RopeView::refreshHeads);
    connect(m_workbench, &Workbench::analysisChanged, this, &RopeView::refreshHeads);
    connect(m_workbench, &Workbench::previewChanged, this, &RopeView::refreshKept);
    refreshHeads();
}

void RopeView::refreshHeads()
{
    const ModelConfig* c = m_workbench->config();
    const int kvHeads = c ? static_cast<int>(c->kvHeads) : 0;
    if (m_head->count() != kvHeads + 1) {
        const QSignalBlocker block(m_head);
        const int previous = m_head->currentIndex();
        m_head->clear();
        m_head->addItem(tr("all heads"), -1);
        for (int k = 0; k < kvHeads; ++k)
            m_head->addItem(tr("head %1").arg(k), k);
        m_head->setCurrentIndex(previous >= 0 && previous < m_head->count() ? previous : 0);
    }
    refresh();
}

void RopeView::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_dirty)
        refresh();
}

void RopeView::refreshKept()
{
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    if (!m_workbench->analysis())
        return;
    m_heatmap->updateKept(m_workbench->selections());
    updateCaption();
}

void RopeView::updateCaption()
{
    const AnalysisPtr& a = m_workbench->analysis();
    const ConversionSettings& s = m_workbench->settings();
    m_caption->setText(tr("Outlined: the %1 pair(s) per head that keep RoPE under the <b>%2</b> strategy. Calibration: %3 (%4 tokens). "
                          "Hover a cell for its frequency and wavelength.")
                           .arg(m_workbench->resolvedRopePairs())
                           .arg(QString::fromUtf8(ropeStrategyName(s.strategy).data()))
                           .arg(QString::fromStdString(a->calibrationDescription))
                           .arg(a->calibrationTokens));
}

void RopeView::refresh()
{
    const AnalysisPtr& a = m_workbench->analysis();
    if (!a) {
        // At once, shown or not: nothing of the last model's scores may stay (and clearing costs nothing).
        m_dirty = false;
        const QString text = m_workbench->config() ? tr("Run Analyze (F5) to score every RoPE frequency pair on calibration tokens.")
                                                   : tr("Open a model (File > Open) to begin.");
        m_heatmap->setPlaceholder(text);
        m_heatmap->clear();
        m_caption->setText(text);
        return;
    }
    if (!isVisible()) {
        m_dirty = true;
        return;
    }
    m_dirty = false;
    const auto measure = static_cast<view::ScoreMeasure>(m_measure->currentData().toInt());
    const view::ScoreGrid grid = view::ropeScoreGrid(*a, measure, m_head->currentData().toInt(), m_workbench->selections());
    m_heatmap->setGrid(grid, view::pairFrequencies(a->config), m_measure->currentText());
    updateCaption();
}

} // namespace mla
