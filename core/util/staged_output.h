#pragma once

#include "util/output_safety.h"

#include <filesystem>
#include <string>

namespace mla {

// Output is written under a temporary name next to its destination and renamed into place only when complete, so
// a cancelled, failed or killed write never leaves a damaged file or folder under the user's name. Destruction
// without commit() removes the temporary. The destination is checked against the output policy
// (util/output_safety.h) when the staging starts, before any work, and again just before the rename.
class StagedFile {
public:
    explicit StagedFile(std::filesystem::path destination, OutputOptions options = {}, FileKind kind = {});
    ~StagedFile();
    StagedFile(const StagedFile&) = delete;
    StagedFile& operator=(const StagedFile&) = delete;

    const std::filesystem::path& path() const { return m_staging; } // write here
    const std::filesystem::path& destination() const { return m_destination; }
    void commit(); // flushes to disk (fsync), renames over the destination, flushes the folder entry

private:
    std::filesystem::path m_destination;
    std::filesystem::path m_staging;
    OutputOptions m_options;
    FileKind m_kind;
    bool m_committed = false;
};

class StagedDirectory {
public:
    explicit StagedDirectory(std::filesystem::path destination, OutputOptions options = {});
    ~StagedDirectory();
    StagedDirectory(const StagedDirectory&) = delete;
    StagedDirectory& operator=(const StagedDirectory&) = delete;

    const std::filesystem::path& path() const { return m_staging; }
    const std::filesystem::path& destination() const { return m_destination; }
    // Writes the output marker, then swaps the finished folder in: a folder replaced (an empty one, or with force
    // an earlier output of this tool) is moved aside and removed only once the new one is in place.
    void commit();

private:
    std::filesystem::path m_destination;
    std::filesystem::path m_staging;
    OutputOptions m_options;
    bool m_committed = false;
};

// Flushes a written file's data to disk (fsync); throws an Error when the disk reports a failure.
void syncFile(const std::filesystem::path& path);
// Flushes a folder's entries (a rename inside it) to disk; best effort.
void syncFolder(const std::filesystem::path& path);

} // namespace mla
