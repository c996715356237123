#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace mla {

// Untrusted input files are opened through here: only a regular file is read (a FIFO, device or socket is an Error
// at once, and opening never blocks), and its size is checked against a limit before anything is read, so that a
// config.json pointing at /dev/zero or a multi-gigabyte "tokenizer" cannot hang the process or exhaust its memory.
class InputFile {
public:
    // `what` names the file's role in messages ("config.json", "calibration text").
    InputFile(const std::filesystem::path& path, const char* what);
    ~InputFile();
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    std::uint64_t size() const { return m_size; }
    int descriptor() const { return m_fd; }
    const std::filesystem::path& path() const { return m_path; }

    // The whole content; an Error when the file is larger than `maxBytes` or changes size while being read.
    std::string readAll(std::uint64_t maxBytes) const;

private:
    std::filesystem::path m_path;
    std::string m_what;
    int m_fd = -1;
    std::uint64_t m_size = 0;
};

// readAll of a new InputFile.
std::string readInputFile(const std::filesystem::path& path, std::uint64_t maxBytes, const char* what);

// Copies a regular file (refusing anything else) to `destination`, which must not exist yet; returns the bytes copied.
std::uint64_t copyInputFile(const std::filesystem::path& source, const std::filesystem::path& destination);

// Size limits of the text inputs, far above any real file of the kind.
inline constexpr std::uint64_t kMaxConfigJsonBytes = 16ull << 20;    // config.json, generation_config.json, index
inline constexpr std::uint64_t kMaxTokenizerFileBytes = 256ull << 20; // tokenizer.json / .model / .bin
inline constexpr std::uint64_t kMaxTextInputBytes = 1ull << 30;       // calibration and evaluation text, id lists

} // namespace mla
