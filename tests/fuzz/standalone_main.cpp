// A main() for the fuzz targets when they are built without libFuzzer (the ordinary build): runs every file given,
// or every file inside a folder given, through LLVMFuzzerTestOneInput once. Arguments starting with '-' (libFuzzer
// options such as -runs=0) are ignored, so the same CTest command line serves both builds. A crash or an uncaught
// exception ends the process abnormally, which CTest reports as a failure.
#include "fuzz_support.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace {

std::vector<std::uint8_t> readAll(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::filesystem::path> files;
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path arg = argv[i];
        if (argv[i][0] == '-')
            continue;
        if (std::filesystem::is_directory(arg)) {
            for (const auto& entry : std::filesystem::recursive_directory_iterator(arg))
                if (entry.is_regular_file())
                    files.push_back(entry.path());
        } else {
            files.push_back(arg);
        }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        std::fprintf(stderr, "running %s\n", f.c_str());
        const std::vector<std::uint8_t> bytes = readAll(f);
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::fprintf(stderr, "%zu inputs ran without a crash\n", files.size());
    return 0;
}
