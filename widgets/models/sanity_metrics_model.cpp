#include "models/sanity_metrics_model.h"

#include "document/formatting.h"

#include <QColor>

#include <cmath>

namespace mla {

SanityMetricsModel::SanityMetricsModel(QObject* parent) : QAbstractTableModel(parent) {}

void SanityMetricsModel::setReport(const std::optional<SanityReport>& report)
{
    QList<Row> rows;
    if (report) {
        const SanityReport& r = *report;
        const double pplChange = r.originalPpl > 0 ? r.convertedPpl / r.originalPpl - 1.0 : 0.0;
        const double kvChange = r.originalKvBytesPerToken > 0 ? r.convertedKvBytesPerToken / r.originalKvBytesPerToken - 1.0 : 0.0;
        rows = {
            {tr("Perplexity"), QString::number(r.originalPpl, 'f', 3), QString::number(r.convertedPpl, 'f', 3),
             fmt::signedPercent(pplChange),
             tr("exp(mean next-token NLL) over %1 held-out tokens sampled from the original model").arg(r.evaluatedTokens),
             r.convertedPpl, pplChange > 0.5},
            {tr("KL(original ‖ converted)"), QString(), QString::number(r.kl, 'f', 4), QString(),
             tr("Mean over tokens of Σ p_orig log(p_orig / p_conv), in nats: 0 means identical predictions"), r.kl, r.kl > 0.5},
            {tr("Top-1 agreement"), QString(), fmt::percent(r.top1Agreement), QString(),
             tr("Share of positions where both models' most likely next token is the same"), r.top1Agreement,
             r.top1Agreement < 0.5},
            {tr("KV bytes / token (measured)"), fmt::bytes(r.originalKvBytesPerToken), fmt::bytes(r.convertedKvBytesPerToken),
             fmt::signedPercent(kvChange),
             tr("Measured from the caches allocated for the generations: the absorbed latent cache really is smaller"),
             r.convertedKvBytesPerToken, false},
            {tr("Tokens evaluated"), QString(), fmt::integer(r.evaluatedTokens), QString(),
             tr("Positions compared for perplexity, KL and agreement"), static_cast<double>(r.evaluatedTokens), false},
        };
    }
    beginResetModel();
    m_rows = rows;
    endResetModel();
}

int SanityMetricsModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_rows.size());
}

int SanityMetricsModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant SanityMetricsModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const Row& row = m_rows[index.row()];
    switch (role) {
    case Qt::DisplayRole:
        switch (index.column()) {
        case MetricColumn: return row.metric;
        case OriginalColumn: return row.original;
        case ConvertedColumn: return row.converted;
        case ChangeColumn: return row.change;
        default: return {};
        }
    case Qt::ToolTipRole:
        return row.tooltip;
    case Qt::TextAlignmentRole:
        return index.column() == MetricColumn ? QVariant(Qt::AlignLeft | Qt::AlignVCenter) : QVariant(Qt::AlignRight | Qt::AlignVCenter);
    case Qt::ForegroundRole:
        if (row.warn && index.column() != MetricColumn)
            return QColor(0xd0, 0x40, 0x30);
        return {};
    case RawValueRole:
        return row.raw;
    default:
        return {};
    }
}

QVariant SanityMetricsModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return {};
    switch (section) {
    case MetricColumn: return tr("Metric");
    case OriginalColumn: return tr("Original");
    case ConvertedColumn: return tr("Converted");
    case ChangeColumn: return tr("Change");
    default: return {};
    }
}

} // namespace mla
