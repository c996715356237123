#pragma once

#include "conversion/sanity_check.h"

#include <QAbstractTableModel>
#include <QList>

#include <optional>

namespace mla {

// The sanity check's numbers: perplexity of both models, KL(original || converted), top-1 agreement and the KV
// bytes per token measured from the caches the generations allocated. Columns: metric, original, converted, change.
class SanityMetricsModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { MetricColumn, OriginalColumn, ConvertedColumn, ChangeColumn, ColumnCount };
    enum Role { RawValueRole = Qt::UserRole + 1 };

    explicit SanityMetricsModel(QObject* parent = nullptr);

    void setReport(const std::optional<SanityReport>& report);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    struct Row {
        QString metric;
        QString original;
        QString converted;
        QString change;
        QString tooltip;
        double raw = 0.0; // the converted value (or the single value)
        bool warn = false;
    };
    QList<Row> m_rows;
};

} // namespace mla
