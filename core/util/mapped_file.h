#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

namespace mla {

// A read-only memory map of a whole file. Checkpoints are mapped, never read into RAM, so that a model larger than
// memory can still be inspected and streamed layer by layer. Shared ownership keeps the map alive for as long as any
// tensor view points into it.
//
// Only regular files are mapped: a FIFO, device or socket is an Error at once (opening never blocks). A file that
// shrinks while it is mapped (truncated or rewritten in place by another program) would kill the process with SIGBUS
// on the first access past its new end; instead, the vanished pages read as zeros, the map is marked damaged and the
// next safe point of the running job (JobControl, the CLI's final check) throws an Error naming the file.
class MappedFile {
public:
    static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::uint8_t* data() const { return m_data; }
    std::size_t size() const { return m_size; }
    std::span<const std::uint8_t> bytes() const { return {m_data, m_size}; }
    const std::filesystem::path& path() const { return m_path; }

    // True once an access found the file shorter than when it was mapped.
    bool damaged() const;
    // Throws the Error for this file when it is damaged.
    void checkIntact() const;

    // Drops the resident pages of [data, data + bytes) when that range lies inside a live MappedFile, so streaming
    // jobs keep their resident memory to what they are working on (the page cache keeps the data for re-reads).
    // Anything else (heap memory, a range outside every map) is left alone.
    static void releasePages(const void* data, std::size_t bytes);

    // The files mapped by this process right now: inputs in use, which no output may replace.
    static std::vector<std::filesystem::path> livePaths();

private:
    MappedFile() = default;
    std::filesystem::path m_path;
    const std::uint8_t* m_data = nullptr;
    std::size_t m_size = 0;
    int m_slot = -1; // in the signal handler's table; -1 when unprotected (table full)
};

} // namespace mla
