#pragma once

#include "session/hdf5_support.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mla {

// Creates one HDF5 file and writes groups, attributes and datasets into it. Every failure is an mla::Error naming
// `shownName` (the user's file, not the temporary one being written). Arrays are chunked with a Fletcher-32 checksum
// so that a flipped bit in the data is an error on reading rather than a wrong number; large ones are also shuffled
// and gzip-compressed.
class Hdf5Writer {
public:
    Hdf5Writer(const std::filesystem::path& file, std::filesystem::path shownName);

    hid_t root() const { return m_file.id(); }
    h5::Handle createGroup(hid_t parent, const std::string& name);

    void attribute(hid_t object, const std::string& name, const std::string& value);
    void attribute(hid_t object, const std::string& name, const char* value) { attribute(object, name, std::string(value)); }
    void attribute(hid_t object, const std::string& name, std::int64_t value);
    void attribute(hid_t object, const std::string& name, double value);

    // Arrays in row-major order with the given dimensions; `units` and `description` become attributes when given.
    void dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, const double* data,
                 const std::string& units = {}, const std::string& description = {});
    void dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, const std::int32_t* data,
                 const std::string& units = {}, const std::string& description = {});
    void dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, const std::int64_t* data,
                 const std::string& units = {}, const std::string& description = {});
    // A scalar dataset (a measured number with its units).
    void scalar(hid_t parent, const std::string& name, double value, const std::string& units, const std::string& description = {});
    void scalar(hid_t parent, const std::string& name, std::int64_t value, const std::string& units,
                const std::string& description = {});

    // Flushes and closes the file; errors here mean the file on disk is not complete.
    void close();

private:
    void write(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, hid_t fileType, hid_t memoryType,
               std::size_t elementSize, const void* data, const std::string& units, const std::string& description);
    [[noreturn]] void fail(const std::string& what) const;

    std::filesystem::path m_shownName;
    h5::Handle m_file;
};

} // namespace mla
