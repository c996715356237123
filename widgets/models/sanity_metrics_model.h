#pragma once

#include "conversion/sanity_check.h"

#include <QAbstractTableModel>
#include <QList>

#include <optional>

namespace mla {

// The sanity check's numbers: perplexity of both models, KL(original || converted), top-1 agreement and the KV
// bytes per token measured from the caches the runs allocated. Columns: metric, original, converted (float32 cache),
// converted with the cache format the check was run with (SanityReport::withCache), change (converted against
// original, float32 caches). A row for the saving of MLA and the chosen cache together against the original with a
// BF16 cache.
class SanityMetricsModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { MetricColumn, OriginalColumn, ConvertedColumn, CacheColumn, ChangeColumn, ColumnCount };
    enum Role { RawValueRole = Qt::UserRole + 1 };

    explicit SanityMetricsModel(QObject* parent = nullptr);

    void setReport(const std::optional<SanityReport>& report);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    // The cache format of CacheColumn ("int4/64+rope:int8/64"); empty without a report.
    QString cacheFormat() const { return m_cacheFormat; }

private:
    struct Row {
        QString metric;
        QString original;
        QString converted;
        QString withCache;
        QString change;
        QString tooltip;
        double raw = 0.0; // the converted value (or the single value)
        bool warn = false;
        bool warnCache = false;
    };
    QList<Row> m_rows;
    QString m_cacheFormat;
};

} // namespace mla
