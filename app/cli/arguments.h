#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mla::cli {

struct OptionSpec {
    const char* name;      // without the leading "--"
    const char* valueName; // nullptr for a flag
    const char* help;
};

struct CommandSpec;
class Arguments;
using CommandFn = int (*)(const Arguments&);

struct CommandSpec {
    const char* name;
    const char* usage;    // after "mla-workbench-cli <name> "
    const char* summary;  // one line for the command list
    const char* details;  // paragraph for --help, may be empty
    std::vector<OptionSpec> options;
    int maxPositionals;
    CommandFn run;
};

// A usage mistake (unknown option, missing value, bad number): exit code 2 with the command's usage.
struct UsageError {
    std::string message;
};

class Arguments {
public:
    static Arguments parse(const CommandSpec& spec, const std::vector<std::string>& args);

    const CommandSpec& spec() const { return *m_spec; }
    bool has(const std::string& name) const { return m_values.count(name) != 0; }
    std::optional<std::string> value(const std::string& name) const;
    std::string valueOr(const std::string& name, const std::string& fallback) const;
    std::optional<long long> integer(const std::string& name, long long min, long long max) const;
    std::optional<double> number(const std::string& name, double min, double max) const;
    const std::vector<std::string>& positionals() const { return m_positionals; }
    std::optional<std::string> positional(std::size_t i) const;

private:
    const CommandSpec* m_spec = nullptr;
    std::map<std::string, std::string> m_values;
    std::vector<std::string> m_positionals;
};

std::string commandHelp(const CommandSpec& spec);

} // namespace mla::cli
