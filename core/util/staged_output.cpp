#include "util/staged_output.h"

#include "util/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace mla {
namespace {

std::filesystem::path absoluteDestination(const std::filesystem::path& destination)
{
    std::filesystem::path absolute = std::filesystem::absolute(destination).lexically_normal();
    if (absolute.filename().empty())
        absolute = absolute.parent_path();
    return absolute;
}

std::string stagingPrefix(const std::filesystem::path& absolute)
{
    return "." + absolute.filename().string() + ".partial-";
}

std::filesystem::path stagingName(const std::filesystem::path& destination)
{
    const std::filesystem::path absolute = absoluteDestination(destination);
    return absolute.parent_path() / (stagingPrefix(absolute) + std::to_string(::getpid()));
}

// A write that was killed (kill -9, a crash, power loss) leaves its staging file or folder behind, named with its
// process id. Those of processes that no longer exist are removed before a new write to the same destination, so
// interrupted exports of a large model do not pile up beside it. A live process's staging is never touched.
void removeStaleStaging(const std::filesystem::path& destination)
{
    namespace fs = std::filesystem;
    const fs::path absolute = absoluteDestination(destination);
    const std::string prefix = stagingPrefix(absolute);
    std::error_code ec;
    for (fs::directory_iterator it(absolute.parent_path(), ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(prefix, 0) != 0)
            continue;
        std::string rest = name.substr(prefix.size());
        if (rest.size() > 4 && rest.compare(rest.size() - 4, 4, "-old") == 0)
            rest.resize(rest.size() - 4);
        if (rest.empty() || rest.size() > 9 || rest.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const pid_t pid = static_cast<pid_t>(std::stol(rest));
        if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        std::error_code removeError;
        fs::remove_all(it->path(), removeError);
    }
}

} // namespace

void syncFile(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw Error(path, std::string("cannot open to flush: ") + std::strerror(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0)
        throw Error(path, std::string("cannot flush to disk: ") + std::strerror(err));
}

void syncFolder(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0)
        return;
    ::fsync(fd);
    ::close(fd);
}

StagedFile::StagedFile(std::filesystem::path destination, OutputOptions options, FileKind kind)
    : m_destination(std::move(destination)), m_staging(stagingName(m_destination)), m_options(std::move(options)),
      m_kind(std::move(kind))
{
    requireOutputFile(m_destination, m_options, m_kind);
    removeStaleStaging(m_destination);
    std::error_code ec;
    std::filesystem::remove(m_staging, ec);
}

StagedFile::~StagedFile()
{
    if (!m_committed) {
        std::error_code ec;
        std::filesystem::remove(m_staging, ec);
    }
}

void StagedFile::commit()
{
    syncFile(m_staging);
    // The destination may have changed since the write began (another program, a second save).
    requireOutputFile(m_destination, m_options, m_kind);
    if (std::rename(m_staging.c_str(), m_destination.c_str()) != 0)
        throw Error(m_destination, std::string("cannot move the finished file into place: ") + std::strerror(errno));
    m_committed = true;
    syncFolder(absoluteDestination(m_destination).parent_path());
}

StagedDirectory::StagedDirectory(std::filesystem::path destination, OutputOptions options)
    : m_destination(std::move(destination)), m_staging(stagingName(m_destination)), m_options(std::move(options))
{
    requireOutputFolder(m_destination, m_options);
    removeStaleStaging(m_destination);
    std::error_code ec;
    std::filesystem::remove_all(m_staging, ec);
    std::filesystem::create_directories(m_staging, ec);
    if (ec)
        throw Error(m_staging, "cannot create the output folder: " + ec.message());
}

StagedDirectory::~StagedDirectory()
{
    if (!m_committed) {
        std::error_code ec;
        std::filesystem::remove_all(m_staging, ec);
    }
}

void StagedDirectory::commit()
{
    namespace fs = std::filesystem;
    writeOutputMarker(m_staging);
    for (const auto& entry : fs::directory_iterator(m_staging)) {
        if (entry.is_regular_file())
            syncFile(entry.path());
    }
    syncFolder(m_staging);
    requireOutputFolder(m_destination, m_options);
    std::error_code ec;
    fs::path previous;
    if (fs::exists(fs::symlink_status(m_destination, ec))) {
        previous = stagingName(m_destination).string() + "-old";
        fs::remove_all(previous, ec);
        fs::rename(m_destination, previous, ec);
        if (ec)
            throw Error(m_destination, "cannot replace the existing folder: " + ec.message());
    }
    fs::rename(m_staging, m_destination, ec);
    if (ec) {
        const std::string problem = ec.message();
        if (!previous.empty())
            fs::rename(previous, m_destination, ec);
        throw Error(m_destination, "cannot move the finished folder into place: " + problem);
    }
    m_committed = true;
    syncFolder(absoluteDestination(m_destination).parent_path());
    if (!previous.empty())
        fs::remove_all(previous, ec);
}

} // namespace mla
