#include "panels/model_panel.h"

#include "document/workbench.h"
#include "models/model_info_model.h"

#include <QComboBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QHeaderView>
#include <QSpinBox>
#include <QTableView>
#include <QVBoxLayout>

namespace mla {

ModelPanel::ModelPanel(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    m_info = new ModelInfoModel(this);
    m_view = new QTableView(this);
    m_view->setModel(m_info);
    m_view->horizontalHeader()->setVisible(false);
    m_view->verticalHeader()->setVisible(false);
    m_view->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
    m_view->horizontalHeader()->setStretchLastSection(true);
    m_view->setSelectionMode(QAbstractItemView::NoSelection);
    m_view->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_view->setShowGrid(false);
    m_view->setAlternatingRowColors(true);
    m_view->setWordWrap(false);
    m_view->verticalHeader()->setDefaultSectionSize(m_view->fontMetrics().height() + 6);

    m_context = new QSpinBox(this);
    m_context->setRange(1, 16 * 1024 * 1024);
    m_context->setSingleStep(1024);
    m_context->setGroupSeparatorShown(true);
    m_context->setToolTip(tr("Context length N the cache sizes are computed for: bytes = N × batch × bytes per token"));
    m_batch = new QSpinBox(this);
    m_batch->setRange(1, 65536);
    m_batch->setToolTip(tr("Sequences decoded together: each has its own cache"));
    m_format = new QComboBox(this);
    m_format->addItem(tr("BF16"), static_cast<int>(CacheFormat::BF16));
    m_format->addItem(tr("int8 (group 64)"), static_cast<int>(CacheFormat::Int8));
    m_format->addItem(tr("int4 (group 64)"), static_cast<int>(CacheFormat::Int4));
    m_format->addItem(tr("F32"), static_cast<int>(CacheFormat::F32));
    m_format->setToolTip(tr("Cache element format: 2 bytes (BF16), 1 (int8) or ½ (int4) per element, plus an F16 scale and "
                            "zero point per group of 64 for the quantised ones"));

    auto* form = new QFormLayout;
    form->addRow(tr("Context length"), m_context);
    form->addRow(tr("Batch"), m_batch);
    form->addRow(tr("Cache format"), m_format);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_view, 1);
    layout->addLayout(form);

    connect(m_context, &QSpinBox::valueChanged, this, [this](int v) { m_workbench->setContextLength(v); });
    connect(m_batch, &QSpinBox::valueChanged, this, [this](int v) { m_workbench->setBatchSize(v); });
    connect(m_format, &QComboBox::currentIndexChanged, this,
            [this](int i) { m_workbench->setCacheFormat(static_cast<CacheFormat>(m_format->itemData(i).toInt())); });
    connect(m_workbench, &Workbench::modelChanged, this, &ModelPanel::refresh);
    connect(m_workbench, &Workbench::memoryParametersChanged, this, &ModelPanel::refreshCache);
    refresh();
}

void ModelPanel::refresh()
{
    ModelInfoModel::Facts facts;
    facts.name = m_workbench->modelName();
    facts.parameters = m_workbench->parameterCount();
    if (m_workbench->hasModel()) {
        const Model& m = *m_workbench->model().model;
        facts.format = QString::fromStdString(m.format);
        facts.fileBytes = static_cast<double>(m.fileBytes);
        const QString source = QString::fromStdString(m_workbench->model().tokenizerSource);
        facts.tokenizer = source.isEmpty() ? QString() : QFileInfo(source).fileName();
        if (source.startsWith(QLatin1String("embedded")))
            facts.tokenizer = source;
    } else if (m_workbench->config()) {
        facts.format = tr("session (weights not open)");
    }
    m_info->setModel(m_workbench->config(), facts);
    refreshCache();
    setEnabled(m_workbench->config() != nullptr);
}

void ModelPanel::refreshCache()
{
    {
        const QSignalBlocker a(m_context);
        const QSignalBlocker b(m_batch);
        const QSignalBlocker c(m_format);
        m_format->setCurrentIndex(std::max(0, m_format->findData(static_cast<int>(m_workbench->cacheFormat()))));
        m_context->setValue(static_cast<int>(std::min<std::int64_t>(m_workbench->contextLength(), m_context->maximum())));
        m_batch->setValue(static_cast<int>(std::min<std::int64_t>(m_workbench->batchSize(), m_batch->maximum())));
    }
    m_info->setCacheParameters(m_workbench->contextLength(), m_workbench->batchSize(),
                               m_workbench->cacheFormat());
}

} // namespace mla
