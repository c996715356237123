#pragma once

#include <QString>
#include <QTest>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace mla::test {

// Real checkpoints copied into the repository (see tests/data/models/README.md).
std::filesystem::path modelsDir();
std::filesystem::path demoDir();
std::filesystem::path sourceDir();
std::filesystem::path cliPath();

// A fresh, empty scratch directory for this test (under MLA_TEST_TMP, or the system temp dir).
std::filesystem::path scratchDir(const std::string& name);

struct ProcessResult {
    int exitCode = -1;
    bool crashed = false;
    bool timedOut = false;
    std::string out;
    std::string err;
};
// Runs the CLI with the given arguments; a hang is reported as timedOut after `timeoutMs`.
ProcessResult runCli(const std::vector<std::string>& args, int timeoutMs = 120000);

std::string readTextFile(const std::filesystem::path& path);
void writeTextFile(const std::filesystem::path& path, const std::string& text);
std::vector<std::uint8_t> fileBytes(const std::filesystem::path& path);
void writeBytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes);

// Builders of binary headers (GGUF, llama2.c) field by field, little-endian as the host: a value's bytes, and a
// string as GGUF writes it (u64 length, then the bytes).
template <typename T>
void put(std::vector<std::uint8_t>& out, T v)
{
    const std::size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
}
inline void putString(std::vector<std::uint8_t>& out, const std::string& s)
{
    put<std::uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
}

// Largest |a - b| / max(|b|, floor) over two equally sized arrays.
double maxRelativeDifference(const float* a, const float* b, std::size_t n, double floor = 1.0);
double maxAbsoluteDifference(const float* a, const float* b, std::size_t n);
// ||a - b||_2 / ||b||_2: the relative difference of two logit arrays as vectors, the measure used where results come
// from different but equivalent orders of float32 operations (elementwise ratios there only show rounding noise).
double relativeNormDifference(const float* a, const float* b, std::size_t n);

} // namespace mla::test

// QCOMPARE for std::string prints both values on failure.
namespace QTest {
template <>
inline char* toString(const std::string& s)
{
    return QTest::toString(QString::fromStdString(s));
}
} // namespace QTest

#define MLA_SKIP(reason) QSKIP(reason)
