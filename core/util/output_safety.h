#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mla {

// The one policy for every file or folder this tool writes (CLI, GUI, sessions, exports, plot images), so that no
// writer can lose a user's data:
//  - nothing is written over or into an input: a destination that is an input, lies inside an input folder or holds
//    an input is refused, comparing device and inode (so symbolic and hard links cannot hide an input);
//  - only a regular file, or a folder this tool wrote (it carries the marker below and nothing else), is ever
//    replaced; a device, FIFO, socket or symbolic link is never touched;
//  - an existing non-empty folder, or a file that is not of the kind being written, is replaced only when the
//    caller says `force` (the CLI's --force; the GUI asks first).
// Files currently memory-mapped by this process (the weights of any open model) always count as inputs.
struct OutputOptions {
    bool force = false;
    std::vector<std::filesystem::path> inputs; // files and folders the job reads
};

enum class OutputVerdict {
    Create,     // nothing there yet
    Replace,    // an empty folder or a file of the kind being written: replaced without asking
    NeedsForce, // replaced only with force (the GUI asks the user)
    Refused,    // never, not even with force
};

struct OutputCheck {
    OutputVerdict verdict = OutputVerdict::Create;
    std::string problem; // for NeedsForce and Refused: what is there, in words, without the path

    bool allowed(bool force) const
    {
        return verdict == OutputVerdict::Create || verdict == OutputVerdict::Replace
               || (force && verdict == OutputVerdict::NeedsForce);
    }
};

// The kind of file being written. An existing regular file of that kind (a session file for a session save) is
// replaced without force; any other regular file only with force. Without a test every regular file is of the kind.
struct FileKind {
    std::string description; // "an HDF5 session file", for messages
    std::function<bool(const std::filesystem::path&)> test;
};

OutputCheck inspectOutputFolder(const std::filesystem::path& folder, const std::vector<std::filesystem::path>& inputs = {});
OutputCheck inspectOutputFile(const std::filesystem::path& file, const std::vector<std::filesystem::path>& inputs = {},
                              const FileKind& kind = {});

// Throw an Error "<path>: <problem>" unless the destination may be written with `options`. Writers call these before
// any work and again just before they move the finished output into place.
void requireOutputFolder(const std::filesystem::path& folder, const OutputOptions& options);
void requireOutputFile(const std::filesystem::path& file, const OutputOptions& options, const FileKind& kind = {});

// The marker file that makes a folder "one this tool wrote": a JSON list of the entries it wrote. A folder holding
// anything else (a file the user added, a sub-folder) is not ours any more and is never replaced.
inline constexpr const char* kOutputMarkerName = ".mla-workbench-output.json";
void writeOutputMarker(const std::filesystem::path& folder);

// True for a regular file that starts with the HDF5 signature (what a session file is).
bool isHdf5File(const std::filesystem::path& file);

} // namespace mla
