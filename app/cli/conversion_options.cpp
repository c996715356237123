#include "conversion_options.h"

#include "conversion/settings_validation.h"
#include "settings/settings_table.h"

namespace mla::cli {
namespace {

std::vector<OptionSpec> optionsOf(SettingScope scope)
{
    std::vector<OptionSpec> out;
    for (const SettingFlag& f : settingFlags(scope))
        out.push_back({f.name, f.valueName, f.help});
    return out;
}

auto lookupIn(const Arguments& args)
{
    return [&args](std::string_view flag) { return args.value(std::string(flag)); };
}

} // namespace

std::vector<OptionSpec> calibrationOptions()
{
    return optionsOf(SettingScope::Workbench);
}

std::vector<OptionSpec> settingsOptions()
{
    return optionsOf(SettingScope::Conversion);
}

bool calibrationGiven(const Arguments& args)
{
    return calibrationFlagGiven(lookupIn(args));
}

Settings settingsFrom(const Arguments& args, const ModelConfig& config)
{
    Settings s;
    try {
        s = settingsFromFlags(lookupIn(args), config);
    } catch (const SettingsFlagError& e) {
        throw UsageError{e.message};
    }
    // Every value against the model at once (the pipeline's conversion checks again, for the workbench's sake).
    validateConversionSettings(config, s.conversion);
    return s;
}

} // namespace mla::cli
