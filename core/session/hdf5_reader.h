#pragma once

#include "session/hdf5_support.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mla {

// Reads an untrusted HDF5 file. The file is opened read-only; every object is checked for its kind, type and shape
// before anything is read, and no allocation is sized by the file beyond a fixed bound or beyond what the file can
// actually hold. Every problem is an mla::Error "<file>: <problem>".
class Hdf5Reader {
public:
    // Refuses a file that is not HDF5 at all, or that HDF5 cannot open (truncated, damaged superblock).
    // `memoryBudget`: bytes all arrays read through this reader may take together, checked against each array's
    // declared size before it is read (and so before any decompression); default: the memory available now.
    explicit Hdf5Reader(const std::filesystem::path& file, std::optional<std::uint64_t> memoryBudget = std::nullopt);

    const std::filesystem::path& path() const { return m_path; }
    hid_t root() const { return m_file.id(); }
    [[noreturn]] void fail(const std::string& problem) const;

    // Children of a group, by name. `where` is the parent's HDF5 path, for messages ("/analysis").
    bool hasChild(hid_t parent, const std::string& name) const;
    h5::Handle group(hid_t parent, const std::string& name, const std::string& where) const;
    std::optional<h5::Handle> optionalGroup(hid_t parent, const std::string& name, const std::string& where) const;

    bool hasAttribute(hid_t object, const std::string& name) const;
    std::string stringAttribute(hid_t object, const std::string& name, const std::string& where) const;
    std::int64_t integerAttribute(hid_t object, const std::string& name, const std::string& where, std::int64_t min,
                                  std::int64_t max) const;
    double numberAttribute(hid_t object, const std::string& name, const std::string& where) const;

    // A numeric array whose shape must equal `expected` (a -1 entry accepts any extent there) and hold at most
    // `maxElements` values. `shape` receives the actual shape.
    std::vector<double> doubles(hid_t parent, const std::string& name, const std::string& where,
                                const std::vector<std::int64_t>& expected, std::uint64_t maxElements,
                                std::vector<std::int64_t>* shape = nullptr) const;
    std::vector<std::int64_t> integers(hid_t parent, const std::string& name, const std::string& where,
                                       const std::vector<std::int64_t>& expected, std::uint64_t maxElements,
                                       std::vector<std::int64_t>* shape = nullptr) const;
    double scalarNumber(hid_t parent, const std::string& name, const std::string& where) const;
    std::int64_t scalarInteger(hid_t parent, const std::string& name, const std::string& where) const;

private:
    h5::Handle openAttribute(hid_t object, const std::string& name, const std::string& where, H5T_class_t cls,
                             const char* kind) const;
    // Opens a dataset after checking its type class, rank, extents, size bound and stored size; returns it with the
    // element count.
    h5::Handle openArray(hid_t parent, const std::string& name, const std::string& where, H5T_class_t cls,
                         const std::vector<std::int64_t>* expected, std::uint64_t maxElements,
                         std::vector<std::int64_t>& shape, std::uint64_t& count) const;
    template <class T>
    std::vector<T> readArray(hid_t parent, const std::string& name, const std::string& where, H5T_class_t cls, hid_t memoryType,
                             const std::vector<std::int64_t>* expected, std::uint64_t maxElements,
                             std::vector<std::int64_t>* shape) const;

    void reserve(std::uint64_t bytes, const std::string& what) const;

    std::filesystem::path m_path;
    std::uint64_t m_fileSize = 0;
    std::uint64_t m_budget = 0;
    std::string m_budgetSource;
    mutable std::uint64_t m_reserved = 0;
    h5::Handle m_file;
};

} // namespace mla
