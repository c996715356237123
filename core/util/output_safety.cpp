#include "util/output_safety.h"

#include "util/error.h"
#include "util/mapped_file.h"
#include "util/version.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mla {
namespace {

namespace fs = std::filesystem;

struct Identity {
    dev_t device;
    ino_t inode;
    bool operator==(const Identity& o) const { return device == o.device && inode == o.inode; }
};

// Through symbolic links, as the data they lead to is what must not be lost.
std::optional<Identity> identityOf(const fs::path& path, bool* isFolder = nullptr)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return std::nullopt;
    if (isFolder)
        *isFolder = S_ISDIR(st.st_mode);
    return Identity{st.st_dev, st.st_ino};
}

fs::path absoluteNormal(const fs::path& path)
{
    std::error_code ec;
    fs::path p = fs::absolute(path, ec).lexically_normal();
    if (ec)
        p = path.lexically_normal();
    if (p.filename().empty() && p.has_parent_path() && p != p.root_path())
        p = p.parent_path();
    return p;
}

struct Input {
    fs::path path;     // as given, for messages
    fs::path resolved; // symbolic links resolved
    Identity identity;
    bool folder = false;
};

std::vector<Input> resolveInputs(const std::vector<fs::path>& given)
{
    std::vector<fs::path> all = given;
    for (const fs::path& mapped : MappedFile::livePaths())
        all.push_back(mapped);
    std::vector<Input> inputs;
    for (const fs::path& p : all) {
        if (p.empty())
            continue;
        Input in;
        in.path = p;
        bool folder = false;
        const auto id = identityOf(p, &folder);
        if (!id)
            continue; // an input that does not exist cannot be overwritten
        std::error_code ec;
        in.resolved = fs::weakly_canonical(absoluteNormal(p), ec);
        if (ec)
            in.resolved = absoluteNormal(p);
        in.identity = *id;
        in.folder = folder;
        inputs.push_back(std::move(in));
    }
    return inputs;
}

// Every existing folder from `path` (resolved) up to the root.
std::vector<Identity> ancestorIdentities(const fs::path& path)
{
    std::vector<Identity> ids;
    std::error_code ec;
    fs::path p = fs::weakly_canonical(absoluteNormal(path), ec);
    if (ec)
        p = absoluteNormal(path);
    for (;;) {
        if (const auto id = identityOf(p))
            ids.push_back(*id);
        if (p == p.root_path() || !p.has_parent_path() || p.parent_path() == p)
            break;
        p = p.parent_path();
    }
    return ids;
}

OutputCheck refused(std::string problem)
{
    return {OutputVerdict::Refused, std::move(problem)};
}

std::string quoted(const fs::path& p)
{
    return "'" + p.string() + "'";
}

// The checks against the job's inputs, shared by files and folders. `container` is the folder the output lands in
// (the destination's parent for a file, the destination itself for a folder, whose inside is replaced).
std::optional<OutputCheck> checkAgainstInputs(const fs::path& destination, bool isFolderOutput,
                                              const std::vector<fs::path>& given)
{
    const std::vector<Input> inputs = resolveInputs(given);
    if (inputs.empty())
        return std::nullopt;
    const std::optional<Identity> self = identityOf(destination);
    for (const Input& in : inputs) {
        if (self && *self == in.identity)
            return refused("is an input of this job" + (in.path == destination ? std::string() : " (the same "
                           + std::string(in.folder ? "folder" : "file") + " as " + quoted(in.path) + ")")
                           + "; write the output somewhere else");
    }
    // Writing into a folder that is an input, or a folder inside one, changes that input.
    const std::vector<Identity> around = ancestorIdentities(destination.parent_path());
    for (const Input& in : inputs) {
        if (!in.folder)
            continue;
        for (const Identity& a : around) {
            if (a == in.identity)
                return refused("lies inside the input folder " + quoted(in.path) + "; write the output somewhere else");
        }
    }
    // Replacing a folder replaces everything in it: it must not hold an input.
    if (isFolderOutput && self) {
        for (const Input& in : inputs) {
            for (const Identity& a : ancestorIdentities(in.resolved.parent_path())) {
                if (a == *self)
                    return refused("holds the input " + quoted(in.path) + ", which replacing it would delete");
            }
        }
    }
    return std::nullopt;
}

std::string fileKindName(mode_t mode)
{
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    if (S_ISFIFO(mode))
        return "a FIFO (named pipe)";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

// The marker's list of entries, or nullopt when the folder has no readable marker.
std::optional<std::set<std::string>> markerEntries(const fs::path& folder)
{
    const fs::path marker = folder / kOutputMarkerName;
    struct stat st {};
    if (::lstat(marker.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
        return std::nullopt;
    std::ifstream in(marker, std::ios::binary);
    const nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
    if (json.is_discarded() || !json.is_object() || !json.contains("files") || !json["files"].is_array())
        return std::nullopt;
    std::set<std::string> entries;
    for (const auto& f : json["files"]) {
        if (f.is_string())
            entries.insert(f.get<std::string>());
    }
    return entries;
}

// A listed entry is ours when it is a regular file, or a real folder (an export's recovery/) holding only real folders
// and regular files that the marker lists too, by their relative path: a user's file put inside it makes it foreign.
bool onlyListedFiles(const fs::path& path, const std::string& name, const std::set<std::string>& listed)
{
    std::error_code ec;
    const fs::file_type type = fs::symlink_status(path, ec).type();
    if (ec)
        return false;
    if (type == fs::file_type::regular)
        return true;
    if (type != fs::file_type::directory)
        return false;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string inner = name + "/" + it->path().filename().string();
        if (!listed.count(inner) || !onlyListedFiles(it->path(), inner, listed))
            return false;
    }
    return !ec;
}

} // namespace

bool isHdf5File(const std::filesystem::path& file)
{
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return false;
    struct stat st {};
    char head[8] = {};
    const bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::read(fd, head, sizeof head) == sizeof head
                    && std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) == 0;
    ::close(fd);
    return ok;
}

OutputCheck inspectOutputFolder(const std::filesystem::path& folder, const std::vector<std::filesystem::path>& inputs)
{
    const fs::path dest = absoluteNormal(folder);
    if (dest == dest.root_path())
        return refused("is the root folder");
    if (auto problem = checkAgainstInputs(dest, true, inputs))
        return *problem;
    struct stat st {};
    if (::lstat(dest.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return {OutputVerdict::Create, {}};
        return refused(std::string("cannot be inspected: ") + std::strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (S_ISREG(st.st_mode))
            return refused("exists and is a file, not a folder; an output folder is never written over a file");
        return refused("is " + fileKindName(st.st_mode) + ", which is never replaced; give a new folder name");
    }
    std::error_code ec;
    std::vector<std::string> foreign;
    bool empty = true;
    const auto ours = markerEntries(dest);
    for (fs::directory_iterator it(dest, ec), end; !ec && it != end; it.increment(ec)) {
        empty = false;
        const std::string name = it->path().filename().string();
        if (name == kOutputMarkerName)
            continue;
        if (!ours || !ours->count(name) || !onlyListedFiles(it->path(), name, *ours))
            foreign.push_back(name);
    }
    if (ec)
        return refused("cannot be listed: " + ec.message());
    if (empty)
        return {OutputVerdict::Replace, {}};
    if (foreign.empty())
        return {OutputVerdict::NeedsForce, "is not empty: it holds an earlier output of " + std::string(kToolName)
                                               + ", replaced only when forced (--force)"};
    std::string shown;
    for (std::size_t i = 0; i < foreign.size() && i < 3; ++i)
        shown += (i ? ", '" : "'") + foreign[i] + "'";
    if (foreign.size() > 3)
        shown += " and " + std::to_string(foreign.size() - 3) + " more";
    return refused("is a folder that " + std::string(kToolName) + " did not write (it holds " + shown
                   + "); it is never replaced, not even when forced: give a new or empty folder");
}

OutputCheck inspectOutputFile(const std::filesystem::path& file, const std::vector<std::filesystem::path>& inputs,
                              const FileKind& kind)
{
    const fs::path dest = absoluteNormal(file);
    if (auto problem = checkAgainstInputs(dest, false, inputs))
        return *problem;
    struct stat st {};
    if (::lstat(dest.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return {OutputVerdict::Create, {}};
        return refused(std::string("cannot be inspected: ") + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return refused("is " + fileKindName(st.st_mode) + ", which is never replaced; give a new file name");
    if (!kind.test || kind.test(dest))
        return {OutputVerdict::Replace, {}};
    return {OutputVerdict::NeedsForce, "exists and is not " + kind.description + "; replaced only when forced (--force)"};
}

void requireOutputFolder(const std::filesystem::path& folder, const OutputOptions& options)
{
    const OutputCheck check = inspectOutputFolder(folder, options.inputs);
    if (!check.allowed(options.force))
        throw Error(folder, check.problem);
}

void requireOutputFile(const std::filesystem::path& file, const OutputOptions& options, const FileKind& kind)
{
    const OutputCheck check = inspectOutputFile(file, options.inputs, kind);
    if (!check.allowed(options.force))
        throw Error(file, check.problem);
}

void writeOutputMarker(const std::filesystem::path& folder)
{
    nlohmann::ordered_json marker;
    marker["written_by"] = std::string(kToolName) + " " + kVersion;
    marker["note"] = "The files listed here were written by this tool; it replaces this folder (when forced) only "
                     "while it holds nothing else.";
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    std::set<std::string> names;
    std::error_code ec;
    // Sub-folders (an export's recovery/) are listed with every file inside, by relative path.
    for (fs::recursive_directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
        names.insert(it->path().lexically_relative(folder).generic_string());
    names.erase(kOutputMarkerName);
    for (const auto& n : names)
        files.push_back(n);
    marker["files"] = files;
    const fs::path path = folder / kOutputMarkerName;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << marker.dump(2) << "\n";
    if (!out.flush())
        throw Error(path, "write failed");
}

} // namespace mla
