#include "common/test_support.h"

#include <QProcess>
#include <QStringList>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace mla::test {

std::filesystem::path modelsDir() { return MLA_TEST_MODELS_DIR; }
std::filesystem::path demoDir() { return MLA_DEMO_DIR; }
std::filesystem::path sourceDir() { return MLA_TEST_SOURCE_DIR; }
std::filesystem::path cliPath() { return MLA_CLI_PATH; }

std::filesystem::path scratchDir(const std::string& name)
{
    const char* env = std::getenv("MLA_TEST_TMP");
    std::filesystem::path base = env ? std::filesystem::path(env) : std::filesystem::temp_directory_path() / "mla-tests";
    std::filesystem::path dir = base / name;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
    return dir;
}

ProcessResult runCli(const std::vector<std::string>& args, int timeoutMs)
{
    QProcess process;
    QStringList list;
    for (const auto& a : args)
        list << QString::fromStdString(a);
    process.start(QString::fromStdString(cliPath().string()), list);
    ProcessResult result;
    if (!process.waitForStarted(10000)) {
        result.err = "could not start " + cliPath().string();
        return result;
    }
    process.closeWriteChannel();
    if (!process.waitForFinished(timeoutMs)) {
        result.timedOut = true;
        process.kill();
        process.waitForFinished(5000);
    }
    result.crashed = process.exitStatus() == QProcess::CrashExit;
    result.exitCode = process.exitCode();
    result.out = process.readAllStandardOutput().toStdString();
    result.err = process.readAllStandardError().toStdString();
    return result;
}

std::string readTextFile(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::uint8_t> fileBytes(const std::filesystem::path& path)
{
    const std::string s = readTextFile(path);
    return {s.begin(), s.end()};
}

void writeBytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void writeTextFile(const std::filesystem::path& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary);
    out << text;
}

double maxRelativeDifference(const float* a, const float* b, std::size_t n, double floor)
{
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double scale = std::max<double>(std::fabs(b[i]), floor);
        worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) / scale);
    }
    return worst;
}

double maxAbsoluteDifference(const float* a, const float* b, std::size_t n)
{
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
    return worst;
}

double relativeNormDifference(const float* a, const float* b, std::size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        diff += d * d;
        norm += static_cast<double>(b[i]) * b[i];
    }
    return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

} // namespace mla::test
