#include "session/hdf5_reader.h"

#include "util/error.h"
#include "util/memory_budget.h"

#include <algorithm>
#include <cstring>

namespace mla {
namespace {

// Text attributes hold names, paths and JSON documents of a few kilobytes; anything near this is damage.
constexpr std::size_t kMaxStringBytes = 64u << 20;
constexpr int kMaxRank = 8;
// gzip cannot expand data by more than about 1032:1; a dataset that claims more is lying about its size.
constexpr std::uint64_t kMaxCompressionRatio = 1100;

std::string childPath(const std::string& where, const std::string& name)
{
    return where == "/" ? "/" + name : where + "/" + name;
}

std::string shapeText(const std::vector<std::int64_t>& dims)
{
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i)
        s += (i ? ", " : "") + (dims[i] < 0 ? std::string("any") : std::to_string(dims[i]));
    return s + "]";
}

const char* className(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER:
        return "integers";
    case H5T_FLOAT:
        return "floating-point numbers";
    case H5T_STRING:
        return "text";
    case H5T_COMPOUND:
        return "compound records";
    case H5T_ENUM:
        return "enumerated values";
    case H5T_VLEN:
        return "variable-length sequences";
    case H5T_ARRAY:
        return "arrays";
    default:
        return "an unsupported type";
    }
}

} // namespace

Hdf5Reader::Hdf5Reader(const std::filesystem::path& file, std::optional<std::uint64_t> memoryBudget) : m_path(file)
{
    if (memoryBudget) {
        m_budget = *memoryBudget;
        m_budgetSource = "the budget given";
    } else {
        const MemoryAvailability a = availableMemory();
        m_budget = a.bytes;
        m_budgetSource = a.source;
    }
    std::error_code ec;
    if (!std::filesystem::exists(file, ec))
        fail("no such file");
    if (!std::filesystem::is_regular_file(file, ec))
        fail("is not a regular file");
    m_fileSize = std::filesystem::file_size(file, ec);
    if (ec)
        fail("cannot be read: " + ec.message());
    const htri_t isHdf5 = H5Fis_hdf5(file.c_str());
    if (isHdf5 == 0)
        fail("not an HDF5 file, so not an MLA Workbench session");
    if (isHdf5 < 0)
        fail("cannot be read (" + h5::takeErrorMessage() + ")");
    h5::Handle fapl = h5::fileAccessList();
    m_file = h5::file(H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl.id()));
    if (!m_file)
        fail("damaged or truncated HDF5 file (" + h5::takeErrorMessage() + ")");
}

void Hdf5Reader::reserve(std::uint64_t bytes, const std::string& what) const
{
    if (bytes > m_budget - std::min(m_reserved, m_budget))
        fail(what + " declares " + formatBytes(bytes) + " of data: loading this session would need more than the "
             + formatBytes(m_budget) + " of memory available (" + m_budgetSource + "), so it is refused before reading it");
    m_reserved += bytes;
}

void Hdf5Reader::fail(const std::string& problem) const
{
    H5Eclear2(H5E_DEFAULT);
    throw Error(m_path, problem);
}

bool Hdf5Reader::hasChild(hid_t parent, const std::string& name) const
{
    const htri_t exists = H5Lexists(parent, name.c_str(), H5P_DEFAULT);
    if (exists < 0)
        fail("damaged file: cannot look up '" + name + "' (" + h5::takeErrorMessage() + ")");
    return exists > 0;
}

h5::Handle Hdf5Reader::group(hid_t parent, const std::string& name, const std::string& where) const
{
    if (!hasChild(parent, name))
        fail(childPath(where, name) + " is missing");
    h5::Handle g = h5::group(H5Gopen2(parent, name.c_str(), H5P_DEFAULT));
    if (!g)
        fail(childPath(where, name) + " is not a readable group (" + h5::takeErrorMessage() + ")");
    return g;
}

std::optional<h5::Handle> Hdf5Reader::optionalGroup(hid_t parent, const std::string& name, const std::string& where) const
{
    if (!hasChild(parent, name))
        return std::nullopt;
    return group(parent, name, where);
}

bool Hdf5Reader::hasAttribute(hid_t object, const std::string& name) const
{
    const htri_t exists = H5Aexists(object, name.c_str());
    if (exists < 0)
        fail("damaged file: cannot look up attribute '" + name + "' (" + h5::takeErrorMessage() + ")");
    return exists > 0;
}

h5::Handle Hdf5Reader::openAttribute(hid_t object, const std::string& name, const std::string& where, H5T_class_t cls,
                                     const char* kind) const
{
    if (!hasAttribute(object, name))
        fail(where + " has no attribute '" + name + "'");
    h5::Handle attr = h5::attribute(H5Aopen(object, name.c_str(), H5P_DEFAULT));
    if (!attr)
        fail(where + " attribute '" + name + "' cannot be read (" + h5::takeErrorMessage() + ")");
    h5::Handle type = h5::datatype(H5Aget_type(attr.id()));
    const H5T_class_t actual = type ? H5Tget_class(type.id()) : H5T_NO_CLASS;
    const bool numberOk = cls == H5T_FLOAT && actual == H5T_INTEGER; // an integer is a fine number
    if (actual != cls && !numberOk)
        fail(where + " attribute '" + name + "' holds " + className(actual) + ", expected " + kind);
    h5::Handle space = h5::dataspace(H5Aget_space(attr.id()));
    const H5S_class_t spaceClass = space ? H5Sget_simple_extent_type(space.id()) : H5S_NO_CLASS;
    const hssize_t points = space ? H5Sget_simple_extent_npoints(space.id()) : -1;
    if (!(spaceClass == H5S_SCALAR || (spaceClass == H5S_SIMPLE && points == 1)))
        fail(where + " attribute '" + name + "' must be a single value");
    return attr;
}

std::string Hdf5Reader::stringAttribute(hid_t object, const std::string& name, const std::string& where) const
{
    h5::Handle attr = openAttribute(object, name, where, H5T_STRING, "text");
    h5::Handle fileType = h5::datatype(H5Aget_type(attr.id()));
    const htri_t variable = H5Tis_variable_str(fileType.id());
    if (variable < 0)
        fail(where + " attribute '" + name + "' has a damaged type");
    // See utf8StringType in hdf5_writer.cpp: libhdf5 1.10 reads variable-length data from a damaged file unchecked.
    if (variable > 0)
        fail(where + " attribute '" + name
             + "' is a variable-length string; sessions store text as fixed-length UTF-8 strings (docs/session-format.md)");
    const std::size_t size = H5Tget_size(fileType.id());
    if (size == 0 || size > kMaxStringBytes)
        fail(where + " attribute '" + name + "' has an implausible length");
    // Read with the file's own string type, so there is no conversion (which would overwrite the last byte of a
    // null-padded string with a terminator).
    h5::Handle memoryType = h5::datatype(H5Tcopy(fileType.id()));
    std::string text(size, '\0');
    if (!memoryType || H5Aread(attr.id(), memoryType.id(), text.data()) < 0)
        fail(where + " attribute '" + name + "' cannot be read (" + h5::takeErrorMessage() + ")");
    text.resize(strnlen(text.data(), size));
    if (H5Tget_strpad(fileType.id()) == H5T_STR_SPACEPAD)
        text.erase(text.find_last_not_of(' ') + 1);
    return text;
}

std::int64_t Hdf5Reader::integerAttribute(hid_t object, const std::string& name, const std::string& where, std::int64_t min,
                                          std::int64_t max) const
{
    h5::Handle attr = openAttribute(object, name, where, H5T_INTEGER, "an integer");
    std::int64_t value = 0;
    if (H5Aread(attr.id(), H5T_NATIVE_INT64, &value) < 0)
        fail(where + " attribute '" + name + "' cannot be read (" + h5::takeErrorMessage() + ")");
    if (value < min || value > max)
        fail(where + " attribute '" + name + "' is " + std::to_string(value) + ", outside [" + std::to_string(min) + ", "
             + std::to_string(max) + "]");
    return value;
}

double Hdf5Reader::numberAttribute(hid_t object, const std::string& name, const std::string& where) const
{
    h5::Handle attr = openAttribute(object, name, where, H5T_FLOAT, "a number");
    double value = 0.0;
    if (H5Aread(attr.id(), H5T_NATIVE_DOUBLE, &value) < 0)
        fail(where + " attribute '" + name + "' cannot be read (" + h5::takeErrorMessage() + ")");
    return value;
}

h5::Handle Hdf5Reader::openArray(hid_t parent, const std::string& name, const std::string& where, H5T_class_t cls,
                                 const std::vector<std::int64_t>* expected, std::uint64_t maxElements,
                                 std::vector<std::int64_t>& shape, std::uint64_t& count) const
{
    const std::string path = childPath(where, name);
    if (!hasChild(parent, name))
        fail(path + " is missing");
    h5::Handle ds = h5::dataset(H5Dopen2(parent, name.c_str(), H5P_DEFAULT));
    if (!ds)
        fail(path + " is not a readable dataset (" + h5::takeErrorMessage() + ")");
    h5::Handle type = h5::datatype(H5Dget_type(ds.id()));
    const H5T_class_t actual = type ? H5Tget_class(type.id()) : H5T_NO_CLASS;
    if (actual != cls)
        fail(path + " holds " + className(actual) + ", expected " + className(cls));
    const std::size_t storedSize = H5Tget_size(type.id());
    if (storedSize == 0 || storedSize > 16)
        fail(path + " has an implausible element size of " + std::to_string(storedSize) + " bytes");

    h5::Handle space = h5::dataspace(H5Dget_space(ds.id()));
    const H5S_class_t spaceClass = space ? H5Sget_simple_extent_type(space.id()) : H5S_NO_CLASS;
    int rank = 0;
    std::vector<hsize_t> dims;
    if (spaceClass == H5S_SIMPLE) {
        rank = H5Sget_simple_extent_ndims(space.id());
        if (rank < 0 || rank > kMaxRank)
            fail(path + " has a damaged shape");
        dims.resize(static_cast<std::size_t>(rank));
        if (rank > 0 && H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr) < 0)
            fail(path + " has a damaged shape");
    } else if (spaceClass != H5S_SCALAR) {
        fail(path + " has no data space");
    }
    shape.assign(dims.begin(), dims.end());
    for (hsize_t d : dims) {
        if (d > maxElements)
            fail(path + " has an implausible extent " + std::to_string(d));
    }
    if (expected) {
        bool matches = expected->size() == shape.size();
        for (std::size_t i = 0; matches && i < shape.size(); ++i)
            matches = (*expected)[i] < 0 || (*expected)[i] == shape[i];
        if (!matches)
            fail(path + " has shape " + shapeText(shape) + ", expected " + shapeText(*expected));
    }
    count = 1;
    for (hsize_t d : dims) {
        if (d != 0 && count > maxElements / d)
            fail(path + " is implausibly large (" + shapeText(shape) + ")");
        count *= d;
    }
    if (count > maxElements)
        fail(path + " is implausibly large (" + shapeText(shape) + ", at most " + std::to_string(maxElements) + " values)");

    // A lying shape must not size an allocation beyond what the file can hold.
    if (count > 0) {
        const std::uint64_t needed = count * storedSize;
        const std::uint64_t stored = H5Dget_storage_size(ds.id());
        h5::Handle dcpl = h5::plist(H5Dget_create_plist(ds.id()));
        const int filters = dcpl ? H5Pget_nfilters(dcpl.id()) : -1;
        if (filters < 0)
            fail(path + " has damaged storage properties");
        if (stored > m_fileSize)
            fail(path + " claims " + std::to_string(stored) + " bytes of storage in a file of " + std::to_string(m_fileSize));
        if (filters == 0 && stored < needed)
            fail(path + " holds " + std::to_string(stored) + " bytes, its shape " + shapeText(shape) + " needs "
                 + std::to_string(needed) + " (truncated or damaged)");
        if (filters > 0 && needed / kMaxCompressionRatio > stored)
            fail(path + " declares " + std::to_string(needed) + " bytes of data but stores only " + std::to_string(stored));
    }
    return ds;
}

template <class T>
std::vector<T> Hdf5Reader::readArray(hid_t parent, const std::string& name, const std::string& where, H5T_class_t cls,
                                     hid_t memoryType, const std::vector<std::int64_t>* expected, std::uint64_t maxElements,
                                     std::vector<std::int64_t>* shapeOut) const
{
    std::vector<std::int64_t> shape;
    std::uint64_t count = 0;
    h5::Handle ds = openArray(parent, name, where, cls, expected, maxElements, shape, count);
    reserve(count * sizeof(T), childPath(where, name));
    std::vector<T> values(static_cast<std::size_t>(count));
    if (count > 0 && H5Dread(ds.id(), memoryType, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
        fail(childPath(where, name) + " cannot be read (" + h5::takeErrorMessage() + ")");
    if (shapeOut)
        *shapeOut = std::move(shape);
    return values;
}

std::vector<double> Hdf5Reader::doubles(hid_t parent, const std::string& name, const std::string& where,
                                        const std::vector<std::int64_t>& expected, std::uint64_t maxElements,
                                        std::vector<std::int64_t>* shape) const
{
    return readArray<double>(parent, name, where, H5T_FLOAT, H5T_NATIVE_DOUBLE, &expected, maxElements, shape);
}

std::vector<std::int64_t> Hdf5Reader::integers(hid_t parent, const std::string& name, const std::string& where,
                                               const std::vector<std::int64_t>& expected, std::uint64_t maxElements,
                                               std::vector<std::int64_t>* shape) const
{
    return readArray<std::int64_t>(parent, name, where, H5T_INTEGER, H5T_NATIVE_INT64, &expected, maxElements, shape);
}

double Hdf5Reader::scalarNumber(hid_t parent, const std::string& name, const std::string& where) const
{
    const std::vector<std::int64_t> scalar;
    return readArray<double>(parent, name, where, H5T_FLOAT, H5T_NATIVE_DOUBLE, &scalar, 1, nullptr).at(0);
}

std::int64_t Hdf5Reader::scalarInteger(hid_t parent, const std::string& name, const std::string& where) const
{
    const std::vector<std::int64_t> scalar;
    return readArray<std::int64_t>(parent, name, where, H5T_INTEGER, H5T_NATIVE_INT64, &scalar, 1, nullptr).at(0);
}

} // namespace mla
