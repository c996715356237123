#pragma once

#include "conversion/preview.h"

#include <QAbstractTableModel>

#include <vector>

namespace mla {

// The live preview per layer: kept RoPE pairs, latent width (editable: editing locks the layer at that width),
// d_kv per KV head, cached elements per token before and after, predicted weight- and activation-space error,
// fraction of the 2-norm score mass that loses its rotation, and the lock. Updated in place on every settings move
// (dataChanged, not a reset, so selection and scrolling stay).
class LayerPreviewModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column {
        LayerColumn,
        PairsColumn,
        LatentColumn,
        DkvColumn,
        KvColumn,
        WeightErrorColumn,
        ActivationErrorColumn,
        TwoNormDroppedColumn,
        LockColumn,
        ColumnCount
    };
    enum Role { SortRole = Qt::UserRole + 1 };

    explicit LayerPreviewModel(QObject* parent = nullptr);

    // `perLayer` false: the layout has one width for every layer (DeepSeek-V3 target), so no layer is edited or locked.
    void setPreview(const ConversionPreview& preview, const std::vector<bool>& locked, std::int64_t kvHeads, bool perLayer = true);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

Q_SIGNALS:
    void latentEdited(int layer, qint64 latent);
    void lockToggled(int layer, bool locked);

private:
    std::vector<LayerPreview> m_layers;
    std::vector<bool> m_locked;
    std::int64_t m_kvHeads = 1;
    bool m_latentApplies = true; // false for svd none
    bool m_perLayer = true;
};

} // namespace mla
