#include "models/sanity_metrics_model.h"

#include "document/formatting.h"

#include "palette_colours.h"

#include <QColor>
#include <QGuiApplication>

#include <cmath>

namespace mla {

SanityMetricsModel::SanityMetricsModel(QObject* parent) : QAbstractTableModel(parent) {}

void SanityMetricsModel::setReport(const std::optional<SanityReport>& report)
{
    QList<Row> rows;
    QString cacheFormat;
    if (report) {
        const SanityReport& r = *report;
        const CacheFormatQuality& q = r.withCache;
        cacheFormat = QString::fromStdString(q.format);
        const double pplChange = r.originalPpl > 0 ? r.convertedPpl / r.originalPpl - 1.0 : 0.0;
        const double kvChange = r.originalKvBytesPerToken > 0 ? r.convertedKvBytesPerToken / r.originalKvBytesPerToken - 1.0 : 0.0;
        const double cachePplChange = r.originalPpl > 0 ? q.ppl / r.originalPpl - 1.0 : 0.0;
        rows = {
            {tr("Perplexity"), QString::number(r.originalPpl, 'f', 3), QString::number(r.convertedPpl, 'f', 3),
             tr("%1 (%2)").arg(QString::number(q.ppl, 'f', 3), fmt::signedPercent(cachePplChange)), fmt::signedPercent(pplChange),
             tr("exp(mean next-token NLL) over %1 held-out tokens sampled from the original model").arg(r.evaluatedTokens),
             r.convertedPpl, pplChange > 0.5, cachePplChange > 0.5},
            {tr("KL(original ‖ converted)"), QString(), QString::number(r.kl, 'f', 4), QString::number(q.kl, 'f', 4), QString(),
             tr("Mean over tokens of Σ p_orig log(p_orig / p_conv), in nats: 0 means identical predictions"), r.kl, r.kl > 0.5,
             q.kl > 0.5},
            {tr("Top-1 agreement"), QString(), fmt::percent(r.top1Agreement), fmt::percent(q.top1Agreement), QString(),
             tr("Share of positions where both models' most likely next token is the same"), r.top1Agreement,
             r.top1Agreement < 0.5, q.top1Agreement < 0.5},
            {tr("KV bytes / token (allocated)"), fmt::bytes(r.originalKvBytesPerToken), fmt::bytes(r.convertedKvBytesPerToken),
             fmt::bytes(q.kvBytesPerToken), fmt::signedPercent(kvChange),
             tr("Measured: the bytes the engine allocated for the check's caches (scales included) divided by their "
                "capacity in tokens. Original and converted with float32 caches, and the converted model with %1")
                 .arg(cacheFormat),
             r.convertedKvBytesPerToken, false, false},
            {tr("KV saving vs original in BF16"), r.originalBf16KvBytesPerToken > 0 ? fmt::bytes(r.originalBf16KvBytesPerToken) : QString(),
             QString(), r.originalBf16KvBytesPerToken > 0 ? fmt::signedPercent(-r.combinedSaving()) : QString(), QString(),
             tr("MLA and the cache format together against the original model with a BF16 cache (the usual deployment): "
                "1 − converted-with-%1 bytes / original-BF16 bytes, both measured from allocated caches")
                 .arg(cacheFormat),
             r.combinedSaving(), false, false},
            {tr("Tokens evaluated"), QString(), fmt::integer(r.evaluatedTokens), fmt::integer(r.evaluatedTokens), QString(),
             tr("Positions compared for perplexity, KL and agreement"), static_cast<double>(r.evaluatedTokens), false, false},
        };
    }
    beginResetModel();
    m_rows = rows;
    m_cacheFormat = cacheFormat;
    endResetModel();
    Q_EMIT headerDataChanged(Qt::Horizontal, CacheColumn, CacheColumn);
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
        case CacheColumn: return row.withCache;
        case ChangeColumn: return row.change;
        default: return {};
        }
    case Qt::ToolTipRole:
        return row.tooltip;
    case Qt::TextAlignmentRole:
        return index.column() == MetricColumn ? QVariant(Qt::AlignLeft | Qt::AlignVCenter) : QVariant(Qt::AlignRight | Qt::AlignVCenter);
    case Qt::ForegroundRole:
        if (index.column() == CacheColumn ? row.warnCache : row.warn && index.column() != MetricColumn)
            return toneOnBase(QGuiApplication::palette(), Tone::Error); // the application palette: light or dark
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
    case ConvertedColumn: return tr("Converted · f32 cache");
    case CacheColumn: return m_cacheFormat.isEmpty() ? tr("Converted · chosen cache") : tr("Converted · %1 cache").arg(m_cacheFormat);
    case ChangeColumn: return tr("Change");
    default: return {};
    }
}

} // namespace mla
