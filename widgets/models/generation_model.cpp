#include "models/generation_model.h"

#include "palette_colours.h"

#include <QColor>
#include <QGuiApplication>

namespace mla {
namespace {

QString visible(const QString& piece)
{
    QString s = piece;
    s.replace(QLatin1Char('\n'), QStringLiteral("\u21b5"));
    return s;
}

} // namespace

GenerationModel::GenerationModel(QObject* parent) : QAbstractTableModel(parent) {}

void GenerationModel::setComparison(const GenerationComparison* comparison, const Tokenizer* tokenizer)
{
    beginResetModel();
    m_original.clear();
    m_converted.clear();
    m_prompt.clear();
    m_firstDifference = -1;
    m_alignment = {};
    if (comparison) {
        m_prompt = QString::fromStdString(comparison->prompt);
        m_firstDifference = comparison->firstDifference;
        auto decode = [tokenizer](const std::vector<int>& ids) {
            QList<Token> out;
            int previous = -1;
            for (int id : ids) {
                const QString piece = tokenizer ? QString::fromUtf8(tokenizer->decodePiece(previous, id)) : QStringLiteral("[%1]").arg(id);
                out.append({id, piece});
                previous = id;
            }
            return out;
        };
        m_original = decode(comparison->originalIds);
        m_converted = decode(comparison->convertedIds);
        m_alignment = alignTokens(comparison->originalIds, comparison->convertedIds);
    }
    endResetModel();
}

const GenerationModel::Token* GenerationModel::token(int row, bool converted) const
{
    if (row < 0 || row >= static_cast<int>(m_alignment.rows.size()))
        return nullptr;
    const AlignedToken& r = m_alignment.rows[static_cast<std::size_t>(row)];
    const std::int64_t i = converted ? r.second : r.first;
    const QList<Token>& side = converted ? m_converted : m_original;
    return i >= 0 && i < side.size() ? &side[static_cast<qsizetype>(i)] : nullptr;
}

AlignOp GenerationModel::op(int row) const
{
    return row >= 0 && row < static_cast<int>(m_alignment.rows.size()) ? m_alignment.rows[static_cast<std::size_t>(row)].op : AlignOp::Same;
}

QString GenerationModel::piece(int row, bool converted) const
{
    const Token* t = token(row, converted);
    return t ? t->piece : QString();
}

bool GenerationModel::differs(int row) const
{
    return op(row) != AlignOp::Same;
}

int GenerationModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_alignment.rows.size());
}

int GenerationModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant GenerationModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const int row = index.row();
    const bool different = differs(row);
    switch (role) {
    case Qt::DisplayRole:
        switch (index.column()) {
        case PositionColumn: {
            const AlignedToken& r = m_alignment.rows[static_cast<std::size_t>(row)];
            auto at = [](std::int64_t i) { return i >= 0 ? QString::number(i) : QStringLiteral("\u2013"); };
            return r.first == r.second ? at(r.first) : QStringLiteral("%1 | %2").arg(at(r.first), at(r.second));
        }
        case OriginalColumn: return visible(piece(row, false));
        case ConvertedColumn: return visible(piece(row, true));
        default: return {};
        }
    case TokenIdRole:
        if (index.column() == OriginalColumn || index.column() == ConvertedColumn) {
            const Token* t = token(row, index.column() == ConvertedColumn);
            return t ? t->id : -1;
        }
        return {};
    case DiffersRole:
        return different;
    case Qt::BackgroundRole:
        if (different && index.column() != PositionColumn)
            return differenceBackground(QGuiApplication::palette());
        return {};
    case Qt::ToolTipRole:
        if (index.column() == OriginalColumn || index.column() == ConvertedColumn) {
            const Token* t = token(row, index.column() == ConvertedColumn);
            if (!t)
                return index.column() == OriginalColumn ? tr("the original has no token here (the converted model inserted one)")
                                                        : tr("the converted model has no token here (it dropped the original's)");
            return tr("token id %1").arg(t->id);
        }
        if (index.column() == PositionColumn)
            return tr("Position in the original | in the converted continuation (one number when equal)");
        return {};
    default:
        return {};
    }
}

QVariant GenerationModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return {};
    switch (section) {
    case PositionColumn: return tr("#");
    case OriginalColumn: return tr("Original");
    case ConvertedColumn: return tr("Converted");
    default: return {};
    }
}

} // namespace mla
