#include "models/generation_model.h"

#include <QColor>

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
    }
    endResetModel();
}

QString GenerationModel::piece(int row, bool converted) const
{
    const QList<Token>& side = converted ? m_converted : m_original;
    return row >= 0 && row < side.size() ? side[row].piece : QString();
}

bool GenerationModel::differs(int row) const
{
    const int a = row < m_original.size() ? m_original[row].id : -1;
    const int b = row < m_converted.size() ? m_converted[row].id : -1;
    return a != b;
}

int GenerationModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(std::max(m_original.size(), m_converted.size()));
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
        case PositionColumn: return row;
        case OriginalColumn: return visible(piece(row, false));
        case ConvertedColumn: return visible(piece(row, true));
        default: return {};
        }
    case TokenIdRole:
        if (index.column() == OriginalColumn)
            return row < m_original.size() ? m_original[row].id : -1;
        if (index.column() == ConvertedColumn)
            return row < m_converted.size() ? m_converted[row].id : -1;
        return {};
    case DiffersRole:
        return different;
    case Qt::BackgroundRole:
        if (different && index.column() != PositionColumn)
            return QColor(255, 170, 60, 110);
        return {};
    case Qt::ToolTipRole:
        if (index.column() == OriginalColumn && row < m_original.size())
            return tr("token id %1").arg(m_original[row].id);
        if (index.column() == ConvertedColumn && row < m_converted.size())
            return tr("token id %1").arg(m_converted[row].id);
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
