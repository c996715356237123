#include "util/staged_output.h"

#include "util/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mla {
namespace {

std::filesystem::path stagingName(const std::filesystem::path& destination)
{
    std::filesystem::path absolute = std::filesystem::absolute(destination).lexically_normal();
    if (absolute.filename().empty())
        absolute = absolute.parent_path();
    return absolute.parent_path()
           / ("." + absolute.filename().string() + ".partial-" + std::to_string(::getpid()));
}

} // namespace

void syncFile(const std::filesystem::path& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ::fsync(fd);
    ::close(fd);
}

StagedFile::StagedFile(std::filesystem::path destination)
    : m_destination(std::move(destination)), m_staging(stagingName(m_destination))
{
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
    if (std::rename(m_staging.c_str(), m_destination.c_str()) != 0)
        throw Error(m_destination, std::string("cannot move the finished file into place: ") + std::strerror(errno));
    m_committed = true;
}

StagedDirectory::StagedDirectory(std::filesystem::path destination)
    : m_destination(std::move(destination)), m_staging(stagingName(m_destination))
{
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
    for (const auto& entry : fs::directory_iterator(m_staging)) {
        if (entry.is_regular_file())
            syncFile(entry.path());
    }
    std::error_code ec;
    fs::path previous;
    if (fs::exists(m_destination)) {
        if (!fs::is_directory(m_destination))
            throw Error(m_destination, "exists and is not a folder");
        previous = stagingName(m_destination).string() + "-old";
        fs::remove_all(previous, ec);
        fs::rename(m_destination, previous, ec);
        if (ec)
            throw Error(m_destination, "cannot replace the existing folder: " + ec.message());
    }
    fs::rename(m_staging, m_destination, ec);
    if (ec) {
        if (!previous.empty())
            fs::rename(previous, m_destination, ec);
        throw Error(m_destination, "cannot move the finished folder into place: " + ec.message());
    }
    m_committed = true;
    if (!previous.empty())
        fs::remove_all(previous, ec);
}

} // namespace mla
