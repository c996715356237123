#include "arguments.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace mla::cli {

Arguments Arguments::parse(const CommandSpec& spec, const std::vector<std::string>& args)
{
    Arguments a;
    a.m_spec = &spec;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
            std::string name = arg.substr(2);
            std::optional<std::string> inlineValue;
            if (auto eq = name.find('='); eq != std::string::npos) {
                inlineValue = name.substr(eq + 1);
                name = name.substr(0, eq);
            }
            // --help and --version work on every command.
            if ((name == "help" || name == "version") && !inlineValue) {
                a.m_values[name] = "";
                continue;
            }
            const OptionSpec* option = nullptr;
            for (const auto& o : spec.options) {
                if (name == o.name)
                    option = &o;
            }
            if (!option)
                throw UsageError{"unknown option --" + name};
            if (!option->valueName) {
                if (inlineValue)
                    throw UsageError{"--" + name + " takes no value"};
                a.m_values[name] = "";
                continue;
            }
            if (inlineValue) {
                a.m_values[name] = *inlineValue;
            } else {
                if (i + 1 >= args.size())
                    throw UsageError{"--" + name + " needs a value (" + option->valueName + ")"};
                a.m_values[name] = args[++i];
            }
            continue;
        }
        if (arg == "-h") {
            a.m_values["help"] = "";
            continue;
        }
        if (arg.size() > 1 && arg[0] == '-' && !(std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.'))
            throw UsageError{"unknown option " + arg};
        a.m_positionals.push_back(arg);
    }
    if (!a.has("help") && static_cast<int>(a.m_positionals.size()) > spec.maxPositionals)
        throw UsageError{"unexpected argument '" + a.m_positionals[static_cast<std::size_t>(spec.maxPositionals)] + "'"};
    return a;
}

std::optional<std::string> Arguments::value(const std::string& name) const
{
    auto it = m_values.find(name);
    if (it == m_values.end())
        return std::nullopt;
    return it->second;
}

std::string Arguments::valueOr(const std::string& name, const std::string& fallback) const
{
    return value(name).value_or(fallback);
}

std::optional<long long> Arguments::integer(const std::string& name, long long min, long long max) const
{
    auto v = value(name);
    if (!v)
        return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || errno != 0)
        throw UsageError{"--" + name + " expects an integer, got '" + *v + "'"};
    if (n < min || n > max)
        throw UsageError{"--" + name + " must be between " + std::to_string(min) + " and " + std::to_string(max)};
    return n;
}

std::optional<double> Arguments::number(const std::string& name, double min, double max) const
{
    auto v = value(name);
    if (!v)
        return std::nullopt;
    char* end = nullptr;
    const double n = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0' || !std::isfinite(n))
        throw UsageError{"--" + name + " expects a number, got '" + *v + "'"};
    if (n < min || n > max) {
        std::ostringstream s;
        s << "--" << name << " must be between " << min << " and " << max;
        throw UsageError{s.str()};
    }
    return n;
}

std::optional<std::string> Arguments::positional(std::size_t i) const
{
    if (i >= m_positionals.size())
        return std::nullopt;
    return m_positionals[i];
}

std::string commandHelp(const CommandSpec& spec)
{
    std::ostringstream s;
    s << "Usage: mla-workbench-cli " << spec.name << " " << spec.usage << "\n\n" << spec.summary << "\n";
    if (spec.details && *spec.details)
        s << "\n" << spec.details << "\n";
    s << "\nOptions:\n";
    for (const auto& o : spec.options) {
        std::string left = std::string("  --") + o.name;
        if (o.valueName)
            left += std::string(" ") + o.valueName;
        s << left;
        if (left.size() < 28)
            s << std::string(28 - left.size(), ' ');
        else
            s << "\n" << std::string(28, ' ');
        s << o.help << "\n";
    }
    s << "  --help                    show this help\n  --version                 print the version\n";
    return s.str();
}

} // namespace mla::cli
