#include "models/layer_preview_model.h"

#include "document/formatting.h"

#include "palette_colours.h"

#include <QColor>
#include <QGuiApplication>
#include <QFont>

namespace mla {

LayerPreviewModel::LayerPreviewModel(QObject* parent) : QAbstractTableModel(parent) {}

void LayerPreviewModel::setPreview(const ConversionPreview& preview, const std::vector<bool>& locked, std::int64_t kvHeads, bool perLayer)
{
    const bool sameShape = preview.layers.size() == m_layers.size();
    if (!sameShape)
        beginResetModel();
    m_layers = preview.layers;
    m_locked = locked;
    m_locked.resize(m_layers.size(), false);
    m_kvHeads = std::max<std::int64_t>(kvHeads, 1);
    m_perLayer = perLayer;
    m_latentApplies = !m_layers.empty() && (m_layers.front().latentK + m_layers.front().latentV) > 0;
    if (!sameShape)
        endResetModel();
    else if (!m_layers.empty())
        Q_EMIT dataChanged(index(0, 0), index(rowCount() - 1, ColumnCount - 1));
}

int LayerPreviewModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_layers.size());
}

int LayerPreviewModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant LayerPreviewModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const int l = index.row();
    const LayerPreview& p = m_layers[static_cast<std::size_t>(l)];
    const std::int64_t latent = p.latentK + p.latentV;
    const bool locked = m_locked[static_cast<std::size_t>(l)];
    const auto column = static_cast<Column>(index.column());

    if (role == Qt::CheckStateRole && column == LockColumn && m_perLayer)
        return locked ? Qt::Checked : Qt::Unchecked;
    if (role == Qt::TextAlignmentRole)
        return column == LockColumn ? QVariant(Qt::AlignCenter) : QVariant(Qt::AlignRight | Qt::AlignVCenter);
    if (role == Qt::FontRole && column == LatentColumn && locked) {
        QFont f;
        f.setBold(true);
        return f;
    }
    if (role == Qt::EditRole && column == LatentColumn)
        return qlonglong(latent);
    if (role == SortRole) {
        switch (column) {
        case LayerColumn: return l;
        case PairsColumn: return qlonglong(p.ropePairs);
        case LatentColumn: return qlonglong(latent);
        case DkvColumn: return static_cast<double>(latent) / static_cast<double>(m_kvHeads);
        case KvColumn: return qlonglong(p.kvConverted);
        case WeightErrorColumn: return p.weightError;
        case ActivationErrorColumn: return p.activationError;
        case TwoNormDroppedColumn: return p.twoNormDropped;
        case LockColumn: return locked;
        case ColumnCount: break;
        }
        return {};
    }
    if (role == Qt::ToolTipRole) {
        switch (column) {
        case PairsColumn:
            if (!m_perLayer)
                return tr("One RoPE head of %1 pairs (qk_rope_head_dim %2) shared by every query head").arg(p.ropePairs).arg(2 * p.ropePairs);
            return tr("p = %1 pairs keep RoPE: r = 2p = %2 dims per head").arg(p.ropePairs).arg(2 * p.ropePairs);
        case LatentColumn:
            if (!m_perLayer)
                return tr("kv_lora_rank = %1, the same in every layer (the DeepSeek-V3 layout has no per-layer widths)").arg(latent);
            return m_latentApplies ? tr("d_c = %1 (double-click to set this layer by hand; that locks it)").arg(latent)
                                   : tr("No latent: svd none keeps keys and values whole.");
        case KvColumn:
            if (!m_perLayer)
                return tr("Cached elements per token in this layer: %1 before, kv_lora_rank + qk_rope_head_dim = %2 after")
                    .arg(p.kvOriginal)
                    .arg(p.kvConverted);
            return tr("Cached elements per token in this layer: 2·n_kv·d_h = %1 before, d_c + n_kv·r = %2 after")
                .arg(p.kvOriginal)
                .arg(p.kvConverted);
        case WeightErrorColumn: return tr("sqrt(Σ_{i>k} s_i² / Σ s_i²) of [W_k_nope; W_v]: relative Frobenius error on the weights");
        case ActivationErrorColumn:
            return tr("The same on calibration inputs (whitened spectrum): E‖Mx − M_k x‖² relative to E‖Mx‖²");
        case TwoNormDroppedColumn:
            return tr("Share of the 2-norm score mass on pairs that lose their rotation; rotation-loss score %1")
                .arg(fmt::error(p.rotationLoss));
        case LockColumn: return tr("Locked layers keep their latent width when the global width or saving changes.");
        default: return {};
        }
    }
    if (role == Qt::ForegroundRole && (column == WeightErrorColumn || column == ActivationErrorColumn)) {
        const double e = column == WeightErrorColumn ? p.weightError : p.activationError;
        if (e > 0.5)
            return toneOnBase(QGuiApplication::palette(), Tone::Error); // the application palette: light or dark
        return {};
    }
    if (role != Qt::DisplayRole)
        return {};
    switch (column) {
    case LayerColumn: return l;
    case PairsColumn: return QStringLiteral("%1 (%2 dims)").arg(p.ropePairs).arg(2 * p.ropePairs);
    case LatentColumn: return m_latentApplies ? QString::number(latent) : QStringLiteral("\u2014");
    case DkvColumn:
        return m_latentApplies ? fmt::perHead(latent, m_kvHeads) : QStringLiteral("\u2014");
    case KvColumn: return QStringLiteral("%1 \u2192 %2").arg(p.kvOriginal).arg(p.kvConverted);
    case WeightErrorColumn: return fmt::error(p.weightError);
    case ActivationErrorColumn: return fmt::error(p.activationError);
    case TwoNormDroppedColumn: return p.twoNormDropped < 0 ? QStringLiteral("\u2014") : fmt::percent(p.twoNormDropped);
    case LockColumn: return QVariant();
    case ColumnCount: break;
    }
    return {};
}

bool LayerPreviewModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return false;
    if (!m_perLayer)
        return false;
    if (index.column() == LockColumn && role == Qt::CheckStateRole) {
        Q_EMIT lockToggled(index.row(), value.toInt() == Qt::Checked);
        return true;
    }
    if (index.column() == LatentColumn && role == Qt::EditRole && m_latentApplies) {
        bool ok = false;
        const qint64 v = value.toLongLong(&ok);
        if (!ok || v < 1)
            return false;
        Q_EMIT latentEdited(index.row(), v);
        return true;
    }
    return false;
}

Qt::ItemFlags LayerPreviewModel::flags(const QModelIndex& index) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemNeverHasChildren;
    if (index.column() == LatentColumn && m_latentApplies && m_perLayer)
        f |= Qt::ItemIsEditable;
    if (index.column() == LockColumn && m_latentApplies && m_perLayer)
        f |= Qt::ItemIsUserCheckable;
    return f;
}

QVariant LayerPreviewModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal)
        return {};
    if (role == Qt::DisplayRole) {
        switch (section) {
        case LayerColumn: return tr("Layer");
        case PairsColumn: return tr("RoPE pairs");
        case LatentColumn: return tr("Latent d_c");
        case DkvColumn: return tr("d_kv / head");
        case KvColumn: return tr("KV / token");
        case WeightErrorColumn: return tr("Weight error");
        case ActivationErrorColumn: return tr("Activation error");
        case TwoNormDroppedColumn: return tr("2-norm dropped");
        case LockColumn: return tr("Lock");
        default: return {};
        }
    }
    if (role == Qt::ToolTipRole && section == DkvColumn)
        return tr("d_kv = d_c / n_kv: the paper's per-KV-head rank");
    return {};
}

} // namespace mla
