#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace mla {

// Every failure the user can cause (bad file, bad option, inconsistent config) is reported as an Error whose
// message names the file and the problem in one line. Callers at the top (CLI, GUI) print it and exit / show it.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
    Error(const std::filesystem::path& file, const std::string& problem)
        : std::runtime_error(file.string() + ": " + problem) {}
};

// Raised when a long job notices its cancellation flag; callers treat it as "stopped", not as a failure.
class Cancelled : public std::runtime_error {
public:
    Cancelled() : std::runtime_error("cancelled") {}
};

} // namespace mla
