#pragma once

#include "util/job_control.h"

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mla {

// Runs another program (the PyTorch recovery recipe) from core without Qt: its standard output is read line by line
// as it comes, its standard error is kept (the last few KB, for the error message), and the job's cancellation stops
// it. The child runs in a process group of its own, so a cancel also stops what it started itself (torchrun's
// workers, DataLoader processes): SIGTERM to the group, SIGKILL after a grace period.
struct ChildProcessRequest {
    std::vector<std::string> argv;                              // argv[0] is looked up on PATH when it has no '/'
    std::vector<std::pair<std::string, std::string>> setEnvironment; // added to (or replacing in) this process's
    std::filesystem::path workingDirectory;                    // empty: this process's
};

struct ChildProcessResult {
    int exitCode = -1;       // the exit status; -1 when it ended by a signal
    int signal = 0;          // the signal that ended it, 0 when it exited
    std::string errorTail;   // the end of its standard error
    std::string lastLine;    // its last non-empty line of standard output
};

// Runs the program to its end. `onLine` gets each line of standard output (without the newline) on this thread.
// `job.checkCancelled()` is polled at least every 100 ms; on a cancel the child's group is stopped, reaped, and
// Cancelled is thrown. Throws an Error when the program cannot be started at all (not found, not executable).
ChildProcessResult runChildProcess(const ChildProcessRequest& request, const std::function<void(const std::string&)>& onLine,
                                   const JobControl& job);

// The path of the executable `program` as execvp would find it on PATH ("" when there is none); a `program` with a
// '/' is checked as it is.
std::filesystem::path findProgram(const std::string& program);

// One line for a message or a copyable command: arguments quoted for a POSIX shell where they need it.
std::string shellCommandLine(const std::vector<std::string>& argv);

} // namespace mla
