#include "arguments.h"
#include "commands.h"
#include "util/allocator_policy.h"
#include "util/error.h"
#include "util/input_integrity.h"
#include "util/version.h"

#include <exception>
#include <iostream>
#include <new>
#include <vector>

namespace {

std::vector<mla::cli::CommandSpec> commandTable()
{
    using namespace mla::cli;
    return {infoCommand(), analyzeCommand(), convertCommand(), exportCommand(), sessionCommand(), generateCommand(), evalCommand(),
            recoverCommand(), synthCommand()};
}

void printOverview(std::ostream& out, const std::vector<mla::cli::CommandSpec>& commands)
{
    out << "MLA Workbench " << mla::kVersion
        << " — turn multi-head / grouped-query attention models into Multi-head Latent Attention.\n\n"
           "Usage: mla-workbench-cli COMMAND [ARGS] [--help]\n       mla-workbench-cli --version\n\nCommands:\n";
    for (const auto& c : commands) {
        std::string name = std::string("  ") + c.name;
        out << name << std::string(name.size() < 14 ? 14 - name.size() : 1, ' ') << c.summary << "\n";
    }
    out << "\nMODEL is a Hugging Face folder (config.json + safetensors), a .safetensors file, a llama2.c .bin or a "
           ".gguf;\nleft out, the bundled demo model (stories260K) is used.\n";
}

} // namespace

int main(int argc, char** argv)
{
    mla::keepFreedMemoryForReuse(); // one job, then exit: freed layer buffers are reused, not faulted in again
    const auto commands = commandTable();
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        printOverview(args.empty() ? std::cerr : std::cout, commands);
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version" || args[0] == "version") {
        std::cout << "mla-workbench-cli " << mla::kVersion << "\n";
        return 0;
    }
    const mla::cli::CommandSpec* command = nullptr;
    for (const auto& c : commands) {
        if (args[0] == c.name)
            command = &c;
    }
    if (!command) {
        std::cerr << "mla-workbench-cli: unknown command '" << args[0] << "'\n\n";
        printOverview(std::cerr, commands);
        return 2;
    }
    try {
        const auto parsed = mla::cli::Arguments::parse(*command, {args.begin() + 1, args.end()});
        if (parsed.has("help")) {
            std::cout << mla::cli::commandHelp(*command);
            return 0;
        }
        if (parsed.has("version")) {
            std::cout << "mla-workbench-cli " << mla::kVersion << "\n";
            return 0;
        }
        const int status = command->run(parsed);
        // A memory-mapped input that was truncated while in use was read as zeros: whatever was printed or written
        // from it is not to be trusted.
        mla::checkMappedInputs();
        return status;
    } catch (const mla::cli::UsageError& e) {
        std::cerr << "mla-workbench-cli " << command->name << ": " << e.message << "\n\n"
                  << "Usage: mla-workbench-cli " << command->name << " " << command->usage << "\n"
                  << "Try 'mla-workbench-cli " << command->name << " --help'.\n";
        return 2;
    } catch (const mla::Cancelled&) {
        std::cerr << "mla-workbench-cli: cancelled\n";
        return 1;
    } catch (const mla::Error& e) {
        std::cerr << "mla-workbench-cli: error: " << e.what() << "\n";
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "mla-workbench-cli: error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "mla-workbench-cli: error: " << e.what() << "\n";
        return 1;
    }
}
