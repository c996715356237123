#pragma once

#include "conversion/sanity_check.h"
#include "tokenizer/tokenizer.h"

#include <QAbstractTableModel>
#include <QList>

namespace mla {

// The two greedy continuations of the sanity check token by token: position, the original's token, the converted
// model's token; positions where they differ are flagged (DiffersRole, and a highlight background).
class GenerationModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { PositionColumn, OriginalColumn, ConvertedColumn, ColumnCount };
    enum Role { DiffersRole = Qt::UserRole + 1, TokenIdRole };

    explicit GenerationModel(QObject* parent = nullptr);

    // `tokenizer` (may be null: ids are shown) decodes the pieces.
    void setComparison(const GenerationComparison* comparison, const Tokenizer* tokenizer);

    QString prompt() const { return m_prompt; }
    qint64 firstDifference() const { return m_firstDifference; }
    // The decoded piece of one side at a position (empty past its end).
    QString piece(int row, bool converted) const;
    bool differs(int row) const;

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    struct Token {
        int id = -1;
        QString piece;
    };
    QList<Token> m_original;
    QList<Token> m_converted;
    QString m_prompt;
    qint64 m_firstDifference = -1;
};

} // namespace mla
