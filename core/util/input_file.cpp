#include "util/input_file.h"

#include "util/error.h"
#include "util/memory_budget.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mla {
namespace {

std::string notRegularFileReason(mode_t mode)
{
    if (S_ISDIR(mode))
        return "is a folder, not a file";
    if (S_ISFIFO(mode))
        return "is a FIFO (named pipe), not a regular file; only regular files are read";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "is a device, not a regular file; only regular files are read";
    if (S_ISSOCK(mode))
        return "is a socket, not a regular file; only regular files are read";
    return "is not a regular file";
}

} // namespace

InputFile::InputFile(const std::filesystem::path& path, const char* what) : m_path(path), m_what(what)
{
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; regular files ignore it.
    m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (m_fd < 0)
        throw Error(path, std::string("cannot open") + (m_what.empty() ? "" : " the " + m_what) + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(m_fd, &st) != 0) {
        const int err = errno;
        ::close(m_fd);
        throw Error(path, std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(m_fd);
        throw Error(path, notRegularFileReason(st.st_mode));
    }
    m_size = static_cast<std::uint64_t>(st.st_size);
}

InputFile::~InputFile()
{
    if (m_fd >= 0)
        ::close(m_fd);
}

std::string InputFile::readAll(std::uint64_t maxBytes) const
{
    if (m_size > maxBytes)
        throw Error(m_path, formatBytes(m_size) + " is far too large for " + (m_what.empty() ? "this input" : "a " + m_what)
                                + " (at most " + formatBytes(maxBytes) + ")");
    std::string content(static_cast<std::size_t>(m_size), '\0');
    std::size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::pread(m_fd, content.data() + done, content.size() - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw Error(m_path, std::string("read failed: ") + std::strerror(errno));
        }
        if (n == 0)
            throw Error(m_path, "the file shrank while it was being read (" + std::to_string(done) + " of "
                                    + std::to_string(m_size) + " bytes)");
        done += static_cast<std::size_t>(n);
    }
    return content;
}

std::string readInputFile(const std::filesystem::path& path, std::uint64_t maxBytes, const char* what)
{
    return InputFile(path, what).readAll(maxBytes);
}

std::uint64_t copyInputFile(const std::filesystem::path& source, const std::filesystem::path& destination)
{
    const InputFile in(source, "file to copy");
    const int out = ::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0)
        throw Error(destination, std::string("cannot create: ") + std::strerror(errno));
    std::vector<char> buffer(1 << 20);
    std::uint64_t copied = 0;
    for (;;) {
        const ssize_t n = ::read(in.descriptor(), buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            const int err = errno;
            ::close(out);
            throw Error(source, std::string("read failed: ") + std::strerror(err));
        }
        if (n == 0)
            break;
        for (ssize_t written = 0; written < n;) {
            const ssize_t w = ::write(out, buffer.data() + written, static_cast<std::size_t>(n - written));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                const int err = errno;
                ::close(out);
                throw Error(destination, std::string("write failed: ") + std::strerror(err));
            }
            written += w;
        }
        copied += static_cast<std::uint64_t>(n);
    }
    if (::close(out) != 0)
        throw Error(destination, std::string("write failed: ") + std::strerror(errno));
    return copied;
}

} // namespace mla
