#include "session/hdf5_support.h"

#include "session/session.h"

namespace mla::h5 {
namespace {

std::recursive_mutex& libraryMutex()
{
    static std::recursive_mutex mutex;
    return mutex;
}

herr_t collectMessage(unsigned depth, const H5E_error2_t* error, void* clientData)
{
    // Walked from the innermost call outwards: the first entry is where the problem was found, which is what a user
    // can act on ("truncated file", "bad object header"); the outer entries only say which API call failed.
    auto* out = static_cast<std::string*>(clientData);
    if (depth == 0 && error && error->desc && out->empty())
        *out = error->desc;
    return 0;
}

} // namespace

LibraryGuard::LibraryGuard() : m_lock(libraryMutex())
{
    // The thread-safe library keeps the automatic-printing setting per thread, so set it on every entry.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5Eclear2(H5E_DEFAULT);
}

LibraryGuard::~LibraryGuard()
{
    H5Eclear2(H5E_DEFAULT);
}

std::string takeErrorMessage()
{
    std::string message;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, &collectMessage, &message);
    H5Eclear2(H5E_DEFAULT);
    if (message.empty())
        return "HDF5 reported an error";
    return message;
}

Handle fileAccessList()
{
    Handle fapl = plist(H5Pcreate(H5P_FILE_ACCESS));
    if (!fapl)
        return fapl;
    H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V110, H5F_LIBVER_V110);
    H5Pset_file_locking(fapl.id(), true, true);
    return fapl;
}

} // namespace mla::h5

namespace mla {

std::int64_t openHdf5Objects()
{
    const h5::LibraryGuard guard;
    return static_cast<std::int64_t>(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
}

} // namespace mla
