#pragma once

#include <filesystem>
#include <string>

namespace mla {

// Output is written under a temporary name next to its destination and renamed into place only when complete, so
// a cancelled, failed or killed write never leaves a damaged file or folder under the user's name. Destruction
// without commit() removes the temporary.
class StagedFile {
public:
    explicit StagedFile(std::filesystem::path destination);
    ~StagedFile();
    StagedFile(const StagedFile&) = delete;
    StagedFile& operator=(const StagedFile&) = delete;

    const std::filesystem::path& path() const { return m_staging; } // write here
    const std::filesystem::path& destination() const { return m_destination; }
    void commit(); // flushes to disk and renames over the destination

private:
    std::filesystem::path m_destination;
    std::filesystem::path m_staging;
    bool m_committed = false;
};

class StagedDirectory {
public:
    explicit StagedDirectory(std::filesystem::path destination);
    ~StagedDirectory();
    StagedDirectory(const StagedDirectory&) = delete;
    StagedDirectory& operator=(const StagedDirectory&) = delete;

    const std::filesystem::path& path() const { return m_staging; }
    const std::filesystem::path& destination() const { return m_destination; }
    // Replaces the destination (an existing folder there is removed only after the new one is complete).
    void commit();

private:
    std::filesystem::path m_destination;
    std::filesystem::path m_staging;
    bool m_committed = false;
};

// Flushes a written file's data to disk (fsync).
void syncFile(const std::filesystem::path& path);

} // namespace mla
