#include "session/hdf5_writer.h"

#include "util/error.h"

#include <algorithm>

namespace mla {
namespace {

// Arrays at least this large are compressed; smaller ones would only grow from the filter overhead.
constexpr std::uint64_t kCompressFromBytes = 4096;
// Chunks of about this many bytes: large enough for gzip to work well, small enough that reading one value does not
// inflate megabytes.
constexpr std::uint64_t kChunkBytes = 1 << 20;

// Text is fixed-length, not variable-length: reading variable-length data makes libhdf5 1.10 trust sizes and indices
// stored in the file's global heap without checking them, so a damaged session could crash the reader (found by
// fuzzing). A fixed-length string lives inside the attribute itself and is read as plain bytes.
h5::Handle utf8StringType(std::size_t bytes)
{
    h5::Handle type = h5::datatype(H5Tcopy(H5T_C_S1));
    if (type) {
        H5Tset_size(type.id(), std::max<std::size_t>(bytes, 1)); // HDF5 has no zero-length string type
        H5Tset_strpad(type.id(), H5T_STR_NULLPAD);
        H5Tset_cset(type.id(), H5T_CSET_UTF8);
    }
    return type;
}

// Chunk shape: the full extent of every dimension but the first, and as many rows of the first as fit kChunkBytes.
std::vector<hsize_t> chunkShape(const std::vector<std::uint64_t>& dims, std::size_t elementSize)
{
    std::vector<hsize_t> chunk(dims.begin(), dims.end());
    std::uint64_t rowBytes = elementSize;
    for (std::size_t d = 1; d < dims.size(); ++d)
        rowBytes *= dims[d];
    // A single row larger than a chunk (e.g. a huge 1-D array) is cut along the last dimension instead.
    if (dims.size() == 1) {
        chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kChunkBytes / elementSize));
        return chunk;
    }
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], kChunkBytes / std::max<std::uint64_t>(rowBytes, 1)));
    if (rowBytes > kChunkBytes) {
        std::uint64_t inner = elementSize;
        for (std::size_t d = dims.size(); d-- > 1;) {
            const std::uint64_t fit = std::max<std::uint64_t>(1, kChunkBytes / inner);
            chunk[d] = std::min<hsize_t>(dims[d], fit);
            inner *= chunk[d];
        }
    }
    return chunk;
}

} // namespace

Hdf5Writer::Hdf5Writer(const std::filesystem::path& file, std::filesystem::path shownName)
    : m_shownName(std::move(shownName))
{
    h5::Handle fapl = h5::fileAccessList();
    m_file = h5::file(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()));
    if (!m_file)
        fail("cannot create the file");
}

void Hdf5Writer::fail(const std::string& what) const
{
    throw Error(m_shownName, what + " (" + h5::takeErrorMessage() + ")");
}

h5::Handle Hdf5Writer::createGroup(hid_t parent, const std::string& name)
{
    h5::Handle g = h5::group(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!g)
        fail("cannot create group '" + name + "'");
    return g;
}

void Hdf5Writer::attribute(hid_t object, const std::string& name, const std::string& value)
{
    h5::Handle type = utf8StringType(value.size());
    h5::Handle space = h5::dataspace(H5Screate(H5S_SCALAR));
    h5::Handle attr = h5::attribute(H5Acreate2(object, name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT));
    // c_str() also covers the one null byte that stands for empty text.
    if (!attr || H5Awrite(attr.id(), type.id(), value.c_str()) < 0)
        fail("cannot write attribute '" + name + "'");
}

void Hdf5Writer::attribute(hid_t object, const std::string& name, std::int64_t value)
{
    h5::Handle space = h5::dataspace(H5Screate(H5S_SCALAR));
    h5::Handle attr = h5::attribute(H5Acreate2(object, name.c_str(), H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr || H5Awrite(attr.id(), H5T_NATIVE_INT64, &value) < 0)
        fail("cannot write attribute '" + name + "'");
}

void Hdf5Writer::attribute(hid_t object, const std::string& name, double value)
{
    h5::Handle space = h5::dataspace(H5Screate(H5S_SCALAR));
    h5::Handle attr = h5::attribute(H5Acreate2(object, name.c_str(), H5T_IEEE_F64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr || H5Awrite(attr.id(), H5T_NATIVE_DOUBLE, &value) < 0)
        fail("cannot write attribute '" + name + "'");
}

void Hdf5Writer::write(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, hid_t fileType,
                       hid_t memoryType, std::size_t elementSize, const void* data, const std::string& units,
                       const std::string& description)
{
    std::uint64_t count = 1;
    for (auto d : dims)
        count *= d;
    const std::vector<hsize_t> extent(dims.begin(), dims.end());
    h5::Handle space = h5::dataspace(dims.empty() ? H5Screate(H5S_SCALAR)
                                                  : H5Screate_simple(static_cast<int>(extent.size()), extent.data(), nullptr));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    if (!space || !dcpl)
        fail("cannot describe dataset '" + name + "'");
    // Scalars and empty arrays cannot be chunked; there is nothing in them for a checksum to protect beyond the
    // (already checksummed) object header.
    if (!dims.empty() && count > 0) {
        const std::vector<hsize_t> chunk = chunkShape(dims, elementSize);
        H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
        if (count * elementSize >= kCompressFromBytes) {
            H5Pset_shuffle(dcpl.id());
            H5Pset_deflate(dcpl.id(), 4);
        }
        // Last in the pipeline, so it covers the bytes as stored (after compression).
        H5Pset_fletcher32(dcpl.id());
    }
    h5::Handle ds = h5::dataset(H5Dcreate2(parent, name.c_str(), fileType, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT));
    if (!ds)
        fail("cannot create dataset '" + name + "'");
    if (count > 0 && H5Dwrite(ds.id(), memoryType, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        fail("cannot write dataset '" + name + "'");
    if (!units.empty())
        attribute(ds.id(), "units", units);
    if (!description.empty())
        attribute(ds.id(), "description", description);
}

void Hdf5Writer::dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims, const double* data,
                         const std::string& units, const std::string& description)
{
    write(parent, name, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sizeof(double), data, units, description);
}

void Hdf5Writer::dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims,
                         const std::int32_t* data, const std::string& units, const std::string& description)
{
    write(parent, name, dims, H5T_STD_I32LE, H5T_NATIVE_INT32, sizeof(std::int32_t), data, units, description);
}

void Hdf5Writer::dataset(hid_t parent, const std::string& name, const std::vector<std::uint64_t>& dims,
                         const std::int64_t* data, const std::string& units, const std::string& description)
{
    write(parent, name, dims, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(std::int64_t), data, units, description);
}

void Hdf5Writer::scalar(hid_t parent, const std::string& name, double value, const std::string& units, const std::string& description)
{
    write(parent, name, {}, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sizeof(double), &value, units, description);
}

void Hdf5Writer::scalar(hid_t parent, const std::string& name, std::int64_t value, const std::string& units,
                        const std::string& description)
{
    write(parent, name, {}, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(std::int64_t), &value, units, description);
}

void Hdf5Writer::close()
{
    if (m_file && H5Fflush(m_file.id(), H5F_SCOPE_GLOBAL) < 0)
        fail("cannot flush the file");
    if (!m_file.close())
        fail("cannot close the file");
}

} // namespace mla
