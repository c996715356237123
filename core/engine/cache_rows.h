#pragma once

#include "engine/kv_cache_format.h"
#include "tensor/tensor.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mla {

// One buffer of a KV cache: `capacity` token rows of `width` elements, each encoded in the part format
// (kv_codec.h), rows rowBytes() apart. Rows are written once (store) and decoded on every read.
class CacheRows {
public:
    CacheRows() = default;
    CacheRows(std::int64_t capacity, std::int64_t width, const CachePartFormat& format);

    bool empty() const { return m_width == 0; }
    std::int64_t capacity() const { return m_capacity; }
    std::int64_t width() const { return m_width; }
    const CachePartFormat& format() const { return m_format; }
    std::size_t rowBytes() const { return m_rowBytes; }
    std::size_t allocatedBytes() const { return m_rowBytes * static_cast<std::size_t>(m_capacity); }

    // Encodes rows.rows() rows (rows.cols() == width()) into rows [first, first + rows.rows()).
    void store(std::int64_t first, const MatrixRM& rows);
    // Rows [first, first + count) as floats, `width()` apart: a view of the storage for F32, otherwise decoded into
    // `scratch` (grown as needed). Valid until the next store or the next use of `scratch`.
    const float* rowsAsFloat(std::int64_t first, std::int64_t count, std::vector<float>& scratch) const;
    // The same as a matrix (tests, parity checks).
    MatrixRM decoded(std::int64_t first, std::int64_t count) const;
    // The encoded bytes of rows [first, first + count).
    const std::uint8_t* bytes(std::int64_t first) const { return m_data.get() + static_cast<std::size_t>(first) * m_rowBytes; }

private:
    void checkRange(std::int64_t first, std::int64_t count) const;

    std::int64_t m_capacity = 0;
    std::int64_t m_width = 0;
    CachePartFormat m_format;
    std::size_t m_rowBytes = 0;
    std::unique_ptr<std::uint8_t[]> m_data; // not zero-filled: pages are committed as rows are written
};

} // namespace mla
