#include "util/mapped_file.h"

#include "util/error.h"

#include <cerrno>
#include <map>
#include <mutex>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mla {
namespace {

// Live mappings by start address, so releasePages only ever touches file-backed memory.
std::mutex& registryMutex()
{
    static std::mutex m;
    return m;
}
std::map<const std::uint8_t*, std::size_t>& registry()
{
    static std::map<const std::uint8_t*, std::size_t> r;
    return r;
}

} // namespace

void MappedFile::releasePages(const void* data, std::size_t bytes)
{
    const auto* begin = static_cast<const std::uint8_t*>(data);
    {
        std::lock_guard<std::mutex> lock(registryMutex());
        auto it = registry().upper_bound(begin);
        if (it == registry().begin())
            return;
        --it;
        if (begin + bytes > it->first + it->second)
            return;
    }
    const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t first = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) / page * page;
    const std::uintptr_t last = (reinterpret_cast<std::uintptr_t>(begin) + bytes) / page * page;
    if (last > first)
        ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw Error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error(path, std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path, "not a regular file");
    }
    std::shared_ptr<MappedFile> file(new MappedFile());
    file->m_path = path;
    file->m_size = static_cast<std::size_t>(st.st_size);
    if (file->m_size > 0) {
        void* p = ::mmap(nullptr, file->m_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw Error(path, std::string("cannot memory-map: ") + std::strerror(err));
        }
        file->m_data = static_cast<const std::uint8_t*>(p);
        std::lock_guard<std::mutex> lock(registryMutex());
        registry()[file->m_data] = file->m_size;
    }
    ::close(fd);
    return file;
}

MappedFile::~MappedFile()
{
    if (m_data) {
        {
            std::lock_guard<std::mutex> lock(registryMutex());
            registry().erase(m_data);
        }
        ::munmap(const_cast<std::uint8_t*>(m_data), m_size);
    }
}

} // namespace mla
