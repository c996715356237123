#pragma once

#include "conversion/sanity_check.h"
#include "conversion/token_alignment.h"
#include "tokenizer/tokenizer.h"

#include <QAbstractTableModel>
#include <QList>

namespace mla {

// The two continuations of the sanity check aligned token by token (a longest common subsequence, core's
// alignTokens): one row per common token, per pair of differing tokens, and per token only one side has, so a token
// one model inserts marks that token only. Columns: the positions in each side, the original's token, the converted
// model's token; rows that differ are flagged (DiffersRole, and a highlight background).
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
    // Tokens both continuations share in order (the LCS length), and each side's length.
    qint64 commonTokens() const { return m_alignment.common; }
    qint64 originalLength() const { return m_original.size(); }
    qint64 convertedLength() const { return m_converted.size(); }
    AlignOp op(int row) const;
    // The decoded piece of one side in an aligned row (empty where that side has no token).
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
    TokenAlignment m_alignment;
    const Token* token(int row, bool converted) const;
    QString m_prompt;
    qint64 m_firstDifference = -1;
};

} // namespace mla
