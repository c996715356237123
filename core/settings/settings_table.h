#pragma once

#include "model/model_config.h"
#include "settings/settings.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

// The one description of every setting: for each field of Settings, its key in JSON (analyze/convert/session --json
// and the session's JSON copy), its attribute or dataset in a session's settings group (HDF5), its key in the
// workbench's saved preferences (QSettings), the CLI flags that set it, and how its value is parsed from and printed
// to text. Everything that reads or writes settings goes through this table, so a new setting is one new row
// (docs/architecture.md, "Adding a setting").
namespace mla {

// A setting's value: bool (Flag), int64 (Integer), double (Number), text (Text) or a per-layer list (IntegerList).
using SettingValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::int64_t>>;

enum class SettingType {
    Flag,        // bool; HDF5: int64 attribute 0 / 1
    Integer,     // int64 attribute
    Number,      // float64 attribute
    Text,        // fixed-length UTF-8 attribute; one of `choices` when the field has choices
    IntegerList, // int64 dataset [L] or [0]: one value per layer, or empty (the scalar field applies to every layer)
};

// Conversion fields are ConversionSettings: stored in a session's /settings and, for the settings an analysis was
// made with, /analysis/settings. Workbench fields (the calibration of the next analysis, the layer locks) are stored in
// /settings only.
enum class SettingScope { Conversion, Workbench };

// A usage mistake in a CLI flag ("--svd must be joint, split, key, value or none"): the CLI's exit code 2.
struct SettingsFlagError {
    std::string message;
};

// One CLI flag of a field. `apply` parses the flag's text (empty for a switch) into `settings`, or throws
// SettingsFlagError; `config` gives model-dependent bounds (pairs per head).
struct SettingFlag {
    const char* name;      // without the leading "--"
    const char* valueName; // nullptr for a switch
    const char* help;
    void (*apply)(Settings& settings, const std::string& text, const ModelConfig& config);
};

struct SettingField {
    const char* json;       // key in settingsJson
    const char* hdf5;       // attribute (or dataset, for lists) in a session's settings group
    const char* preference; // key in the saved preferences; empty: model-specific, not remembered between runs
    SettingType type;
    SettingScope scope;
    int sinceSchema;        // first session schema version that stores the field (older files: the default)
    const char* meaning;    // one line: the dataset description in sessions, docs/session-format.md
    const char* units;      // of a list's values (HDF5 "units" attribute); empty for scalars
    // Text: the allowed values. Integer, IntegerList: [min, max] of a stored value, given the model when known (pair
    // counts); Number: [min, max].
    std::vector<std::string> (*choices)();
    std::pair<std::int64_t, std::int64_t> (*integerRange)(const ModelConfig* config);
    std::pair<double, double> numberRange;
    SettingValue (*get)(const Settings& settings);
    void (*set)(Settings& settings, const SettingValue& value);
    std::vector<SettingFlag> flags; // in the order of the CLI's --help
};

// Every field, in the order of the CLI's --help (conversion fields first, then the calibration, then the locks).
const std::vector<SettingField>& settingFields();
const SettingField* findSettingField(std::string_view json);

// The text form of a value (preferences, messages) and back. parseSetting checks the type, the choices and the range
// (model-dependent bounds only when `config` is given) and returns nullopt for anything else.
std::string printSetting(const SettingField& field, const SettingValue& value);
std::optional<SettingValue> parseSetting(const SettingField& field, std::string_view text, const ModelConfig* config = nullptr);
// Why `value` is not a valid value of the field (empty when it is): type, choices, range, list length.
std::string settingProblem(const SettingField& field, const SettingValue& value, const ModelConfig* config);

// Every field of `scope` and the scopes below it (Workbench includes Conversion) as one JSON object, in table order.
nlohmann::ordered_json settingsJson(const Settings& settings, SettingScope scope = SettingScope::Workbench);
nlohmann::ordered_json settingsJson(const ConversionSettings& settings);

// --- saved preferences: key -> text, for the fields that do not depend on a model's shape.
std::vector<std::pair<std::string, std::string>> preferenceEntries(const Settings& settings);
// Applies the entries `lookup` finds; invalid or unknown ones are ignored (an old or hand-edited preferences file
// never breaks the workbench). Legacy forms are read too (booleans as true/false, the calibration source as 0/1/2).
void applyPreferences(Settings& settings, const std::function<std::optional<std::string>(std::string_view key)>& lookup);

// --- the CLI
// The flags of one scope, in --help order.
std::vector<SettingFlag> settingFlags(SettingScope scope);
// Whether any calibration flag was given.
bool calibrationFlagGiven(const std::function<std::optional<std::string>(std::string_view flag)>& lookup);
// The settings the flags ask for: --preset first, then every other flag, then the rules between flags (one latent
// choice of --latent-dim / --kv-saving / --kv-budget, one calibration source, --refit or --no-refit, a fixed latent
// leaves nothing to allocate). `lookup` returns a flag's text ("" for a switch), nullopt when absent. Throws
// SettingsFlagError.
Settings settingsFromFlags(const std::function<std::optional<std::string>(std::string_view flag)>& lookup,
                           const ModelConfig& config);

} // namespace mla
