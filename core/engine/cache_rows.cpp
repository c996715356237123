#include "engine/cache_rows.h"

#include "engine/kv_codec.h"
#include "util/error.h"

#include <cstring>

namespace mla {

CacheRows::CacheRows(std::int64_t capacity, std::int64_t width, const CachePartFormat& format)
    : m_capacity(capacity), m_width(width), m_format(format), m_rowBytes(format.rowBytes(width))
{
    if (capacity < 0 || width < 0)
        throw Error("internal: a cache buffer needs a non-negative size");
    const std::size_t bytes = allocatedBytes();
    if (bytes > 0)
        m_data = std::make_unique_for_overwrite<std::uint8_t[]>(bytes);
}

void CacheRows::checkRange(std::int64_t first, std::int64_t count) const
{
    if (first < 0 || count < 0 || first + count > m_capacity)
        throw Error("internal: cache rows [" + std::to_string(first) + ", " + std::to_string(first + count)
                    + ") outside a buffer of " + std::to_string(m_capacity));
}

void CacheRows::store(std::int64_t first, const MatrixRM& rows)
{
    checkRange(first, rows.rows());
    if (rows.cols() != m_width)
        throw Error("internal: storing rows of " + std::to_string(rows.cols()) + " elements into a cache buffer of width "
                    + std::to_string(m_width));
    if (m_format.type == CacheFormat::F32) {
        std::memcpy(m_data.get() + static_cast<std::size_t>(first) * m_rowBytes, rows.data(),
                    static_cast<std::size_t>(rows.size()) * sizeof(float));
        return;
    }
    for (Eigen::Index r = 0; r < rows.rows(); ++r)
        encodeCacheRow(rows.row(r).data(), m_width, m_format, m_data.get() + static_cast<std::size_t>(first + r) * m_rowBytes);
}

const float* CacheRows::rowsAsFloat(std::int64_t first, std::int64_t count, std::vector<float>& scratch) const
{
    checkRange(first, count);
    if (m_format.type == CacheFormat::F32)
        return reinterpret_cast<const float*>(bytes(first));
    const std::size_t need = static_cast<std::size_t>(count * m_width);
    if (scratch.size() < need)
        scratch.resize(need);
    decodeCacheRows(bytes(first), count, m_width, m_format, scratch.data(), m_width);
    return scratch.data();
}

MatrixRM CacheRows::decoded(std::int64_t first, std::int64_t count) const
{
    checkRange(first, count);
    MatrixRM out(count, m_width);
    if (count > 0 && m_width > 0)
        decodeCacheRows(bytes(first), count, m_width, m_format, out.data(), m_width);
    return out;
}

} // namespace mla
