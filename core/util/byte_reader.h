#pragma once

#include "util/error.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>

namespace mla {

// Bounds-checked little-endian reader over an untrusted byte range. Every read checks the remaining length first,
// so a lying count or length in a header becomes an Error naming the file, never an out-of-bounds read.
class ByteReader {
public:
    ByteReader(const std::uint8_t* data, std::size_t size, std::filesystem::path file)
        : m_data(data), m_size(size), m_file(std::move(file)) {}

    std::size_t offset() const { return m_offset; }
    std::size_t remaining() const { return m_size - m_offset; }
    const std::filesystem::path& file() const { return m_file; }

    template <typename T>
    T read(const char* what)
    {
        static_assert(std::is_trivially_copyable_v<T>);
        require(sizeof(T), what);
        T value;
        std::memcpy(&value, m_data + m_offset, sizeof(T));
        m_offset += sizeof(T);
        return value;
    }

    std::string readString(std::size_t length, const char* what)
    {
        require(length, what);
        std::string s(reinterpret_cast<const char*>(m_data + m_offset), length);
        m_offset += length;
        return s;
    }

    const std::uint8_t* skip(std::size_t length, const char* what)
    {
        require(length, what);
        const std::uint8_t* p = m_data + m_offset;
        m_offset += length;
        return p;
    }

    void require(std::size_t length, const char* what) const
    {
        if (length > remaining())
            throw Error(m_file, std::string("truncated: ") + what + " needs " + std::to_string(length)
                                    + " bytes at offset " + std::to_string(m_offset) + ", only "
                                    + std::to_string(remaining()) + " left");
    }

private:
    const std::uint8_t* m_data;
    std::size_t m_size;
    std::size_t m_offset = 0;
    std::filesystem::path m_file;
};

// Multiplication of sizes taken from untrusted headers; throws instead of wrapping around.
inline std::uint64_t checkedMul(std::uint64_t a, std::uint64_t b, const std::filesystem::path& file, const char* what)
{
    std::uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r))
        throw Error(file, std::string("size overflow in ") + what);
    return r;
}

inline std::uint64_t checkedAdd(std::uint64_t a, std::uint64_t b, const std::filesystem::path& file, const char* what)
{
    std::uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r))
        throw Error(file, std::string("size overflow in ") + what);
    return r;
}

} // namespace mla
