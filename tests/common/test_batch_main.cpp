// main() of a batched test executable (test_batch.h): runs the test file named by the first argument.
#include "common/test_batch.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

std::map<std::string, mla::test::BatchedTestMain>& batchedTests()
{
    static std::map<std::string, mla::test::BatchedTestMain> tests;
    return tests;
}

// "/src/tests/core/formats/tst_gguf.cpp" -> "gguf"
std::string testName(const std::string& sourceFile)
{
    std::string name = sourceFile.substr(sourceFile.find_last_of("/\\") + 1);
    name = name.substr(0, name.find_last_of('.'));
    return name.rfind("tst_", 0) == 0 ? name.substr(4) : name;
}

} // namespace

mla::test::BatchedTest::BatchedTest(const char* sourceFile, BatchedTestMain main)
{
    if (!batchedTests().emplace(testName(sourceFile), main).second) {
        std::fprintf(stderr, "two test files named %s in one batched test executable\n", testName(sourceFile).c_str());
        std::abort();
    }
}

int main(int argc, char* argv[])
{
    const auto found = argc >= 2 ? batchedTests().find(argv[1]) : batchedTests().end();
    if (found == batchedTests().end()) {
        std::fprintf(stderr, "usage: %s TEST [Qt Test options]\n  TEST is one of:", argv[0]);
        for (const auto& [name, main] : batchedTests())
            std::fprintf(stderr, " %s", name.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    // The test sees the command line it would have as its own executable: the program, then its options.
    std::vector<char*> args{argv[0]};
    args.insert(args.end(), argv + 2, argv + argc);
    const int count = static_cast<int>(args.size());
    args.push_back(nullptr);
    return found->second(count, args.data());
}
