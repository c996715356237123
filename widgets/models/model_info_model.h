#pragma once

#include "analysis/kv_accounting.h"
#include "model/model_config.h"

#include <QAbstractTableModel>
#include <QList>

#include <optional>

namespace mla {

// The model panel's facts: architecture, sizes, parameters, KV cache per token and the cache at a chosen context
// length and batch. Two columns (property, value); every row has a tooltip with the formula behind it.
class ModelInfoModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { PropertyColumn, ValueColumn, ColumnCount };
    enum Role { RawValueRole = Qt::UserRole + 1 };

    struct Facts {
        QString name;
        QString format;          // safetensors, llama2c, gguf
        QString tokenizer;       // source, or empty
        std::int64_t parameters = 0;
        double fileBytes = 0.0;
    };

    explicit ModelInfoModel(QObject* parent = nullptr);

    void setModel(const ModelConfig* config, const Facts& facts); // null clears
    void setCacheParameters(std::int64_t context, std::int64_t batch, CacheFormat format);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    struct Row {
        QString property;
        QString value;
        QString tooltip;
        QVariant raw;
    };
    void rebuild();

    std::optional<ModelConfig> m_config;
    Facts m_facts;
    std::int64_t m_context = 4096;
    std::int64_t m_batch = 1;
    CacheFormat m_format = CacheFormat::BF16;
    QList<Row> m_rows;
};

} // namespace mla
