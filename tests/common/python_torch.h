#pragma once

// A Python with PyTorch for the tests of an export's PyTorch side (resources/modeling_mla.py, recovery/distill.py):
// $MLA_PYTHON, else Debian's /usr/bin/python3 (python3-torch), else python3 on PATH; probed once per test process.
// Child processes get one thread each (ctest runs tests in parallel) and, where Debian's OpenBLAS is installed, its
// BLAS ahead of the reference BLAS that python3-torch otherwise loads (about 8x faster on these models; the system's
// alternatives are left as they are).
#include "common/sanitizer.h"
#include "common/test_support.h"

#include <QProcess>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>


namespace mla::test {

// The PyTorch runs are not instrumented and their C++ side is covered by other tests, so the sanitizer tree skips
// them (they run in the Release tree): they would only multiply CI time.
#ifdef MLA_ADDRESS_SANITIZER
inline constexpr bool kUnderSanitizer = true;
#else
inline constexpr bool kUnderSanitizer = false;
#endif

struct PythonTorch {
    std::string python;     // empty: none found
    std::string skipReason; // why not, for QSKIP
    std::string torchVersion;
    bool fsdp = false;      // torch.distributed.fsdp imports
    std::string fsdpError;
};

inline QProcessEnvironment pythonEnvironment()
{
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert("OMP_NUM_THREADS", "1");
    env.insert("OPENBLAS_NUM_THREADS", "1");
    const char* openblas = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
    if (std::filesystem::exists(std::filesystem::path(openblas) / "libblas.so.3")) {
        const QString previous = env.value("LD_LIBRARY_PATH");
        env.insert("LD_LIBRARY_PATH", QString::fromUtf8(openblas) + (previous.isEmpty() ? QString() : ":" + previous));
    }
    return env;
}

inline ProcessResult runProgram(const std::string& program, const std::vector<std::string>& args, int timeoutMs,
                                const std::filesystem::path& workingDir = {})
{
    QProcess p;
    p.setProcessEnvironment(pythonEnvironment());
    if (!workingDir.empty())
        p.setWorkingDirectory(QString::fromStdString(workingDir.string()));
    QStringList list;
    for (const auto& a : args)
        list << QString::fromStdString(a);
    p.start(QString::fromStdString(program), list);
    ProcessResult r;
    if (!p.waitForStarted(10000)) {
        r.err = "cannot start " + program;
        return r;
    }
    if (!p.waitForFinished(timeoutMs)) {
        r.timedOut = true;
        p.kill();
        p.waitForFinished(5000);
    }
    r.crashed = p.exitStatus() == QProcess::CrashExit;
    r.exitCode = p.exitCode();
    r.out = p.readAllStandardOutput().toStdString();
    r.err = p.readAllStandardError().toStdString();
    return r;
}

inline const PythonTorch& pythonTorch()
{
    static const PythonTorch found = [] {
        PythonTorch t;
        std::vector<std::string> candidates;
        if (const char* env = std::getenv("MLA_PYTHON"); env && *env)
            candidates.emplace_back(env);
        candidates.emplace_back("/usr/bin/python3");
        candidates.emplace_back("python3");
        const std::string probe =
            "import json, torch\n"
            "r = {'torch': torch.__version__}\n"
            "try:\n"
            "    from torch.distributed.fsdp import FullyShardedDataParallel\n"
            "    r['fsdp'] = ''\n"
            "except Exception as e:\n"
            "    r['fsdp'] = type(e).__name__ + ': ' + str(e)\n"
            "print(json.dumps(r))\n";
        for (const auto& python : candidates) {
            const ProcessResult r = runProgram(python, {"-c", probe}, 120000);
            if (r.exitCode != 0 || r.crashed)
                continue;
            try {
                const auto j = nlohmann::json::parse(r.out);
                t.python = python;
                t.torchVersion = j["torch"].get<std::string>();
                t.fsdpError = j["fsdp"].get<std::string>();
                t.fsdp = t.fsdpError.empty();
                return t;
            } catch (const std::exception&) {
            }
        }
        t.skipReason = "no Python with PyTorch (install python3-torch, or set MLA_PYTHON)";
        return t;
    }();
    return found;
}

#define MLA_REQUIRE_TORCH()                                                                                            \
    do {                                                                                                               \
        if (mla::test::kUnderSanitizer)                                                                                \
            QSKIP("PyTorch runs uninstrumented; this test runs in the Release tree, not under the sanitizers");       \
        if (mla::test::pythonTorch().python.empty())                                                                   \
            QSKIP(mla::test::pythonTorch().skipReason.c_str());                                                        \
    } while (false)

} // namespace mla::test
