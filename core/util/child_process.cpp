#include "util/child_process.h"

#include "util/error.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mla {
namespace {

constexpr std::size_t kErrorTailBytes = 8192;
constexpr auto kTerminateGrace = std::chrono::seconds(5);

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : m_fd(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return m_fd; }
    void reset(int fd = -1)
    {
        if (m_fd >= 0)
            ::close(m_fd);
        m_fd = fd;
    }

private:
    int m_fd = -1;
};

void makePipe(Fd& readEnd, Fd& writeEnd)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw Error(std::string("cannot create a pipe: ") + std::strerror(errno));
    readEnd.reset(fds[0]);
    writeEnd.reset(fds[1]);
}

bool isExecutableFile(const std::filesystem::path& p)
{
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

// The environment the child gets: ours with the request's variables set.
std::vector<std::string> childEnvironment(const std::vector<std::pair<std::string, std::string>>& set)
{
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        const std::string entry(*e);
        const std::string name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto& [key, value] : set)
            replaced = replaced || key == name;
        if (!replaced)
            env.push_back(entry);
    }
    for (const auto& [key, value] : set)
        env.push_back(key + "=" + value);
    return env;
}

// Stops the child's whole group: SIGTERM, then SIGKILL after the grace period; reaps the child.
void stopGroup(pid_t pid)
{
    ::kill(-pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + kTerminateGrace;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            ::kill(-pid, SIGKILL); // what the child started and left behind
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

} // namespace

std::filesystem::path findProgram(const std::string& program)
{
    if (program.empty())
        return {};
    if (program.find('/') != std::string::npos)
        return isExecutableFile(program) ? std::filesystem::path(program) : std::filesystem::path();
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    std::size_t begin = 0;
    while (begin <= dirs.size()) {
        std::size_t end = dirs.find(':', begin);
        if (end == std::string::npos)
            end = dirs.size();
        const std::string dir = dirs.substr(begin, end - begin);
        const std::filesystem::path candidate = std::filesystem::path(dir.empty() ? "." : dir) / program;
        if (isExecutableFile(candidate))
            return candidate;
        begin = end + 1;
    }
    return {};
}

std::string shellCommandLine(const std::vector<std::string>& argv)
{
    std::string out;
    for (const std::string& arg : argv) {
        if (!out.empty())
            out += ' ';
        const bool plain = !arg.empty() && arg.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                 "0123456789_-+=/.,:@%") == std::string::npos;
        if (plain) {
            out += arg;
            continue;
        }
        out += '\'';
        for (char c : arg)
            out += c == '\'' ? std::string("'\\''") : std::string(1, c);
        out += '\'';
    }
    return out;
}

ChildProcessResult runChildProcess(const ChildProcessRequest& request, const std::function<void(const std::string&)>& onLine,
                                   const JobControl& job)
{
    if (request.argv.empty())
        throw Error("no program to run");
    const std::filesystem::path program = findProgram(request.argv[0]);
    if (program.empty())
        throw Error(request.argv[0], "program not found (or not executable)");
    job.checkCancelled();

    // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
    std::vector<std::string> envStrings = childEnvironment(request.setEnvironment);
    std::vector<char*> argv;
    for (const std::string& a : request.argv)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& e : envStrings)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string programPath = program.string();
    const std::string workingDirectory = request.workingDirectory.string();

    Fd outRead, outWrite, errRead, errWrite, execRead, execWrite;
    makePipe(outRead, outWrite);
    makePipe(errRead, errWrite);
    makePipe(execRead, execWrite); // closed by a successful exec (O_CLOEXEC); carries errno when exec fails

    const pid_t pid = ::fork();
    if (pid < 0)
        throw Error(std::string("cannot start ") + request.argv[0] + ": " + std::strerror(errno));
    if (pid == 0) {
        ::setpgid(0, 0);
        ::dup2(outWrite.get(), STDOUT_FILENO);
        ::dup2(errWrite.get(), STDERR_FILENO);
        const int devNull = ::open("/dev/null", O_RDONLY);
        if (devNull >= 0)
            ::dup2(devNull, STDIN_FILENO);
        if (!workingDirectory.empty() && ::chdir(workingDirectory.c_str()) != 0) {
            const int e = errno;
            (void)!::write(execWrite.get(), &e, sizeof e);
            ::_exit(127);
        }
        ::execve(programPath.c_str(), argv.data(), envp.data());
        const int e = errno;
        (void)!::write(execWrite.get(), &e, sizeof e);
        ::_exit(127);
    }
    ::setpgid(pid, pid); // also here, so the group exists before any kill below
    outWrite.reset();
    errWrite.reset();
    execWrite.reset();

    int execErrno = 0;
    ssize_t got;
    while ((got = ::read(execRead.get(), &execErrno, sizeof execErrno)) < 0 && errno == EINTR) {
    }
    if (got == static_cast<ssize_t>(sizeof execErrno)) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        throw Error(request.argv[0], std::string("cannot start: ") + std::strerror(execErrno));
    }

    ChildProcessResult result;
    std::string pending;
    bool outOpen = true, errOpen = true;
    char buffer[65536];
    try {
        while (outOpen || errOpen) {
            pollfd fds[2] = {{outOpen ? outRead.get() : -1, POLLIN, 0}, {errOpen ? errRead.get() : -1, POLLIN, 0}};
            const int ready = ::poll(fds, 2, 100);
            job.checkCancelled();
            if (ready < 0) {
                if (errno == EINTR)
                    continue;
                throw Error(std::string("reading from ") + request.argv[0] + ": " + std::strerror(errno));
            }
            if (outOpen && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                const ssize_t n = ::read(outRead.get(), buffer, sizeof buffer);
                if (n <= 0) {
                    outOpen = n < 0 && errno == EINTR;
                } else {
                    pending.append(buffer, static_cast<std::size_t>(n));
                    std::size_t newline;
                    while ((newline = pending.find('\n')) != std::string::npos) {
                        std::string line = pending.substr(0, newline);
                        pending.erase(0, newline + 1);
                        if (!line.empty() && line.back() == '\r')
                            line.pop_back();
                        if (!line.empty())
                            result.lastLine = line;
                        if (onLine)
                            onLine(line);
                    }
                }
            }
            if (errOpen && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                const ssize_t n = ::read(errRead.get(), buffer, sizeof buffer);
                if (n <= 0) {
                    errOpen = n < 0 && errno == EINTR;
                } else {
                    result.errorTail.append(buffer, static_cast<std::size_t>(n));
                    if (result.errorTail.size() > 2 * kErrorTailBytes)
                        result.errorTail.erase(0, result.errorTail.size() - kErrorTailBytes);
                }
            }
        }
    } catch (...) {
        stopGroup(pid);
        throw;
    }
    if (!pending.empty()) {
        result.lastLine = pending;
        if (onLine)
            onLine(pending);
    }
    if (result.errorTail.size() > kErrorTailBytes)
        result.errorTail.erase(0, result.errorTail.size() - kErrorTailBytes);

    int status = 0;
    while (true) {
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (done < 0 && errno != EINTR)
            break;
        if (job.cancelled()) {
            stopGroup(pid);
            throw Cancelled();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (WIFEXITED(status)) {
        result.exitCode = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

} // namespace mla
