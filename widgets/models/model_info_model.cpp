#include "models/model_info_model.h"

#include "document/formatting.h"
#include "model/architecture.h"
#include "view_data/view_data.h"

namespace mla {

ModelInfoModel::ModelInfoModel(QObject* parent) : QAbstractTableModel(parent) {}

void ModelInfoModel::setModel(const ModelConfig* config, const Facts& facts)
{
    m_config = config ? std::optional<ModelConfig>(*config) : std::nullopt;
    m_facts = facts;
    rebuild();
}

void ModelInfoModel::setCacheParameters(std::int64_t context, std::int64_t batch, CacheFormat format)
{
    m_context = context;
    m_batch = batch;
    m_format = format;
    rebuild();
}

void ModelInfoModel::rebuild()
{
    QList<Row> rows;
    if (m_config) {
        const ModelConfig& c = *m_config;
        const ArchitectureInfo* arch = findArchitecture(c.architecture);
        const QString archName = arch ? QString::fromUtf8(arch->displayName.data(), static_cast<qsizetype>(arch->displayName.size()))
                                      : QString::fromStdString(c.architecture);
        const QString kind = QString::fromStdString(c.attentionKind()).toUpper();
        const std::int64_t kvElements = c.kvElementsPerToken();
        const QString formatName = QString::fromUtf8(cacheFormatName(m_format).data()).toUpper();
        const double bytesPerToken = cacheBytesPerToken(c, m_format);
        const double cacheBytes = bytesPerToken * static_cast<double>(m_context) * static_cast<double>(m_batch);
        rows = {
            {tr("Model"), m_facts.name, tr("The checkpoint that is open."), m_facts.name},
            {tr("Format"), m_facts.format, tr("How the checkpoint is stored on disk."), m_facts.format},
            {tr("Architecture"), QStringLiteral("%1 (%2)").arg(archName, kind),
             tr("MHA: every query head has its own key/value head; GQA: g = n_h / n_kv query heads share one."), archName},
            {tr("Layers"), QString::number(c.layers), tr("L, decoder layers; each has its own KV cache."), qlonglong(c.layers)},
            {tr("Hidden size"), QString::number(c.hidden), tr("d, the width of the residual stream."), qlonglong(c.hidden)},
            {tr("Heads / KV heads"), QStringLiteral("%1 / %2 (group %3)").arg(c.heads).arg(c.kvHeads).arg(c.group()),
             tr("n_h query heads, n_kv key/value heads, g = n_h / n_kv."), qlonglong(c.kvHeads)},
            {tr("Head size"), tr("%1 (%2 RoPE pairs)").arg(c.headDim).arg(c.pairsPerHead()),
             tr("d_h; RoPE rotates d_h / 2 frequency pairs per head."), qlonglong(c.headDim)},
            {tr("RoPE base θ"), QString::number(c.rope.theta, 'g', 8), tr("w_j = θ^(−2j / d_h): pair j rotates by m·w_j at position m."),
             c.rope.theta},
            {tr("Context"), fmt::integer(c.maxPositions), tr("The model's maximum positions."), qlonglong(c.maxPositions)},
            {tr("Parameters"), fmt::count(static_cast<double>(m_facts.parameters)), tr("All weights, embeddings included."),
             qlonglong(m_facts.parameters)},
            {tr("Weights on disk"), fmt::bytes(m_facts.fileBytes), tr("Bytes of the checkpoint file(s)."), m_facts.fileBytes},
            {tr("Vocabulary"), fmt::integer(c.vocab), tr("Token ids the model knows."), qlonglong(c.vocab)},
            {tr("Tokenizer"), m_facts.tokenizer.isEmpty() ? tr("none found") : m_facts.tokenizer,
             tr("Used for calibration text and the sanity check's generations."), m_facts.tokenizer},
            {tr("KV elements / token"), fmt::integer(kvElements),
             tr("2 · L · n_kv · d_h = 2 · %1 · %2 · %3").arg(c.layers).arg(c.kvHeads).arg(c.headDim), qlonglong(kvElements)},
            {tr("KV bytes / token (%1)").arg(formatName), fmt::bytes(bytesPerToken),
             tr("Elements × bytes per element (quantised formats add an F16 scale and zero point per group of 64)."), bytesPerToken},
            {tr("KV cache at %1 × %2").arg(fmt::integer(m_context)).arg(m_batch), fmt::bytes(cacheBytes),
             tr("Bytes per token × context length × batch: what the cache holds at full length."), cacheBytes},
        };
    }
    beginResetModel();
    m_rows = rows;
    endResetModel();
}

int ModelInfoModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_rows.size());
}

int ModelInfoModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant ModelInfoModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const Row& row = m_rows[index.row()];
    switch (role) {
    case Qt::DisplayRole:
        return index.column() == PropertyColumn ? row.property : row.value;
    case Qt::ToolTipRole:
        return row.tooltip;
    case RawValueRole:
        return index.column() == PropertyColumn ? QVariant(row.property) : row.raw;
    default:
        return {};
    }
}

QVariant ModelInfoModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return {};
    return section == PropertyColumn ? tr("Property") : tr("Value");
}

} // namespace mla
