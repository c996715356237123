// The one table of settings: every field named once per place (JSON, session HDF5, preferences, CLI flag), the keys
// the tools already used kept exactly, equality over every field, text round trips, preferences (old forms included,
// garbage ignored) and the CLI's flag rules with their messages.
#include "common/synthetic_analysis.h"
#include "common/test_support.h"
#include "session/session.h"
#include "settings/settings_table.h"

#include <QtTest>

#include <map>
#include <set>

using namespace mla;

namespace {

// A valid value of `field` different from `current`.
SettingValue another(const SettingField& field, const SettingValue& current, const ModelConfig& c)
{
    switch (field.type) {
    case SettingType::Flag:
        return !std::get<bool>(current);
    case SettingType::Integer: {
        const auto [lo, hi] = field.integerRange(&c);
        const std::int64_t v = std::get<std::int64_t>(current);
        return v < hi ? v + 1 : lo;
    }
    case SettingType::Number: {
        const double v = std::get<double>(current);
        return v > 0.5 ? v / 2 : (v + 1.0) / 2 + 0.01;
    }
    case SettingType::Text: {
        if (!field.choices)
            return std::get<std::string>(current) + "x";
        for (const std::string& choice : field.choices()) {
            if (choice != std::get<std::string>(current))
                return choice;
        }
        break;
    }
    case SettingType::IntegerList:
        return std::vector<std::int64_t>(static_cast<std::size_t>(c.layers), 1);
    }
    return current;
}

// A flag lookup over a map, as the CLI's Arguments give them ("" for a switch).
std::function<std::optional<std::string>(std::string_view)> flags(const std::map<std::string, std::string>& given)
{
    return [given](std::string_view name) -> std::optional<std::string> {
        auto it = given.find(std::string(name));
        if (it == given.end())
            return std::nullopt;
        return it->second;
    };
}

std::string flagError(const std::map<std::string, std::string>& given)
{
    try {
        settingsFromFlags(flags(given), test::sixLayerShape());
    } catch (const SettingsFlagError& e) {
        return e.message;
    }
    return {};
}

} // namespace

class TestSettingsTable : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void keysAreUniqueAndKeptFromBefore()
    {
        std::set<std::string> json, hdf5, preference, cli;
        for (const SettingField& f : settingFields()) {
            QVERIFY2(json.insert(f.json).second, f.json);
            QVERIFY2(hdf5.insert(f.hdf5).second, f.hdf5);
            if (*f.preference)
                QVERIFY2(preference.insert(f.preference).second, f.preference);
            for (const SettingFlag& flag : f.flags)
                QVERIFY2(cli.insert(flag.name).second, flag.name);
            QVERIFY2(std::string(f.meaning).size() > 10, f.json);
            QVERIFY(f.sinceSchema >= 1 && f.sinceSchema <= kSessionSchemaVersion);
        }
        // The names the JSON output, the session files and the saved preferences used before the table existed.
        for (const char* k : {"rope_strategy", "rope_pairs", "rope_pairs_per_layer", "uniform_start", "svd", "latent_dim",
                              "latent_dim_per_layer", "kv_saving", "sigma", "activation_aware", "balance_key_value",
                              "choose_balance", "refit", "refit_ridge", "allocate", "kv_budget", "preset"})
            QVERIFY2(json.count(k), k);
        for (const char* k : {"rope_strategy", "rope_pairs", "uniform_start", "svd_method", "latent_dim", "target_kv_saving",
                              "sigma", "activation_aware", "balance_key_value", "choose_balance", "refit", "refit_ridge",
                              "allocate", "kv_budget", "preset", "rope_pairs_per_layer", "latent_dim_per_layer"})
            QVERIFY2(hdf5.count(k), k);
        for (const char* k : {"strategy", "method", "sigma", "targetSaving", "activationAware", "balanceKeyValue", "refit",
                              "allocate", "preset", "calibrationSource", "calibrationSamples", "calibrationLength",
                              "calibrationFile"})
            QVERIFY2(preference.count(k), k);
        // Every settings flag of analyze and convert, in their --help order.
        std::vector<std::string> conversionFlags, calibrationFlags;
        for (const SettingFlag& f : settingFlags(SettingScope::Conversion))
            conversionFlags.push_back(f.name);
        for (const SettingFlag& f : settingFlags(SettingScope::Workbench))
            calibrationFlags.push_back(f.name);
        QCOMPARE(conversionFlags, (std::vector<std::string>{"rope-strategy", "rope-pairs", "uniform-start", "svd", "latent-dim",
                                                            "kv-saving", "sigma", "decomposition", "power-iterations", "preset",
                                                            "kv-budget", "whiten", "balance",
                                                            "refit", "no-refit", "refit-tokens", "allocate", "target", "flashmla"}));
        QCOMPARE(calibrationFlags, (std::vector<std::string>{"calib-samples", "calib-text", "calib-ids", "calib-seq-len", "seed"}));
    }

    void equalityCoversEveryField()
    {
        // The old comparison looked at 14 of the fields; the value type's == looks at all of them.
        const ModelConfig c = test::sixLayerShape();
        const Settings base;
        QVERIFY(base == Settings());
        for (const SettingField& f : settingFields()) {
            Settings changed = base;
            const SettingValue v = another(f, f.get(base), c);
            QVERIFY2(settingProblem(f, v, &c).empty(), f.json);
            f.set(changed, v);
            QVERIFY2(f.get(changed) == v, f.json);
            QVERIFY2(!(changed == base), f.json);
        }
    }

    void jsonHasEveryFieldOfItsScope()
    {
        Settings s;
        s.conversion.ropePairsPerLayer = {1, 2, 1, 2, 1, 2};
        s.lockedLayers = {false, true, false, false, false, false};
        const auto all = settingsJson(s);
        const auto conversion = settingsJson(s.conversion);
        std::size_t conversionFields = 0;
        for (const SettingField& f : settingFields()) {
            QVERIFY2(all.contains(f.json), f.json);
            QCOMPARE(conversion.contains(f.json), f.scope == SettingScope::Conversion);
            conversionFields += f.scope == SettingScope::Conversion ? 1 : 0;
        }
        QCOMPARE(conversion.size(), conversionFields);
        QCOMPARE(all["kv_saving"].get<double>(), 0.75);
        QCOMPARE(all["svd"].get<std::string>(), std::string("joint"));
        QCOMPARE(all["rope_pairs_per_layer"].get<std::vector<int>>(), (std::vector<int>{1, 2, 1, 2, 1, 2}));
        QCOMPARE(all["locked_layers"].get<std::vector<int>>(), (std::vector<int>{0, 1, 0, 0, 0, 0}));
        QCOMPARE(all["calibration_source"].get<std::string>(), std::string("samples"));
    }

    void textRoundTripsAndRejectsBadValues()
    {
        const ModelConfig c = test::sixLayerShape();
        Settings s;
        s.conversion.ropePairsPerLayer = {1, 2, 3, 4, 5, 6};
        s.conversion.targetSaving = 0.123456789012345;
        for (const SettingField& f : settingFields()) {
            const SettingValue v = f.get(s);
            const auto back = parseSetting(f, printSetting(f, v), &c);
            QVERIFY2(back.has_value(), f.json);
            QVERIFY2(*back == v, f.json);
        }
        const SettingField& strategy = *findSettingField("rope_strategy");
        QVERIFY(!parseSetting(strategy, "sideways"));
        QCOMPARE(settingProblem(strategy, std::string("sideways"), &c),
                 std::string("'sideways' is not one of high, low, uniform, 2-norm, rotation-loss"));
        const SettingField& pairs = *findSettingField("rope_pairs");
        QVERIFY(parseSetting(pairs, "16", &c));
        QVERIFY(!parseSetting(pairs, "17", &c)); // more than head_dim / 2
        QVERIFY(!parseSetting(pairs, "-2", &c));
        QVERIFY(!parseSetting(pairs, "2x", &c));
        const SettingField& saving = *findSettingField("kv_saving");
        QVERIFY(!parseSetting(saving, "7"));
        QVERIFY(!parseSetting(saving, "nan"));
        const SettingField& perLayer = *findSettingField("latent_dim_per_layer");
        QCOMPARE(settingProblem(perLayer, std::vector<std::int64_t>{8, 8}, &c), std::string("lists 2 layers, the model has 6"));
        QVERIFY(parseSetting(perLayer, "", &c).has_value());
        QVERIFY(std::get<std::vector<std::int64_t>>(*parseSetting(perLayer, "", &c)).empty());
    }

    void preferencesRoundTripAndIgnoreGarbage()
    {
        Settings a;
        a.conversion.strategy = RopeStrategy::RotationLoss;
        a.conversion.method = LatentMethod::Key;
        a.conversion.targetSaving = 0.6;
        a.conversion.refit = true;
        a.conversion.chooseBalance = true;
        a.conversion.preset = "best";
        a.conversion.latentDim = 77; // model-specific: not remembered
        a.calibration.source = CalibrationOptions::Source::Text;
        a.calibration.file = "/tmp/calibration.txt";
        a.calibration.samples = 12;
        a.calibration.seed = 5;
        std::map<std::string, std::string> stored;
        for (const auto& [k, v] : preferenceEntries(a))
            stored[k] = v;
        Settings b;
        applyPreferences(b, flags(stored));
        QCOMPARE(b.conversion.strategy, a.conversion.strategy);
        QCOMPARE(b.conversion.method, a.conversion.method);
        QCOMPARE(b.conversion.targetSaving, 0.6);
        QVERIFY(b.conversion.refit && b.conversion.chooseBalance);
        QCOMPARE(b.conversion.preset, std::string("best"));
        QCOMPARE(b.conversion.latentDim, std::int64_t(-1));
        QCOMPARE(b.calibration, a.calibration);

        // Older preferences files: typed values read back as text, the source as its number.
        Settings c;
        applyPreferences(c, flags({{"targetSaving", "0.8"}, {"refit", "true"}, {"calibrationSource", "2"},
                                   {"calibrationFile", "/tmp/ids.txt"}, {"calibrationSamples", "32"}}));
        QCOMPARE(c.conversion.targetSaving, 0.8);
        QVERIFY(c.conversion.refit);
        QCOMPARE(c.calibration.source, CalibrationOptions::Source::Ids);
        QCOMPARE(c.calibration.samples, std::int64_t(32));

        // Garbage is ignored, not applied; a file source without a file falls back to samples.
        Settings d;
        applyPreferences(d, flags({{"strategy", "sideways"}, {"targetSaving", "7"}, {"preset", "worst"}, {"calibrationSamples", "0"},
                                   {"calibrationSource", "text"}}));
        QVERIFY(d == Settings());
    }

    void flagsSetTheirFields()
    {
        const Settings s = settingsFromFlags(flags({{"rope-strategy", "uniform"}, {"rope-pairs", "3"}, {"uniform-start", "2"},
                                                    {"svd", "split"}, {"latent-dim", "24"}, {"sigma", "sqrt"}, {"whiten", ""},
                                                    {"balance", "on"}, {"refit", ""}, {"calib-text", "/tmp/t.txt"},
                                                    {"calib-seq-len", "64"}, {"seed", "9"}}),
                                             test::sixLayerShape());
        QCOMPARE(s.conversion.strategy, RopeStrategy::Uniform);
        QCOMPARE(s.conversion.ropePairs, std::int64_t(3));
        QCOMPARE(s.conversion.uniformStart, std::int64_t(2));
        QCOMPARE(s.conversion.method, LatentMethod::Split);
        QCOMPARE(s.conversion.latentDim, std::int64_t(24));
        QCOMPARE(s.conversion.sigma, SigmaPlacement::Sqrt);
        QVERIFY(s.conversion.activationAware && s.conversion.balanceKeyValue && !s.conversion.chooseBalance && s.conversion.refit);
        QCOMPARE(s.calibration.source, CalibrationOptions::Source::Text);
        QCOMPARE(s.calibration.file, std::filesystem::path("/tmp/t.txt"));
        QCOMPARE(s.calibration.sequenceLength, std::int64_t(64));
        QCOMPARE(s.calibration.seed, std::uint64_t(9));
        QVERIFY(s.lockedLayers.empty());

        // A preset is a starting point whatever the flag order; a budget turns the allocation on; a fixed width or
        // another method leaves nothing to allocate.
        const Settings best = settingsFromFlags(flags({{"no-refit", ""}, {"preset", "best"}}), test::sixLayerShape());
        QVERIFY(best.conversion.allocate && best.conversion.activationAware && !best.conversion.refit);
        QCOMPARE(best.conversion.preset, std::string("best"));
        const Settings budget = settingsFromFlags(flags({{"kv-budget", "600"}}), test::sixLayerShape());
        QVERIFY(budget.conversion.allocate);
        QCOMPARE(budget.conversion.kvBudget, std::int64_t(600));
        QVERIFY(!settingsFromFlags(flags({{"preset", "best"}, {"latent-dim", "8"}}), test::sixLayerShape()).conversion.allocate);
        QVERIFY(!settingsFromFlags(flags({{"allocate", ""}, {"svd", "key"}}), test::sixLayerShape()).conversion.allocate);
        const Settings balanceAuto = settingsFromFlags(flags({{"balance", "auto"}}), test::sixLayerShape());
        QVERIFY(balanceAuto.conversion.chooseBalance && !balanceAuto.conversion.balanceKeyValue);
        QVERIFY(settingsFromFlags(flags({}), test::sixLayerShape()) == Settings());
    }

    void flagMistakesAreUsageErrors()
    {
        QCOMPARE(flagError({{"rope-strategy", "middle"}}), std::string("--rope-strategy must be high, low, uniform, 2-norm or rotation-loss"));
        QCOMPARE(flagError({{"svd", "lu"}}), std::string("--svd must be joint, split, key, value or none"));
        QCOMPARE(flagError({{"sigma", "left"}}), std::string("--sigma must be up or sqrt"));
        QCOMPARE(flagError({{"preset", "fast"}}), std::string("--preset must be paper or best"));
        QCOMPARE(flagError({{"balance", "maybe"}}), std::string("--balance must be off, on or auto"));
        QCOMPARE(flagError({{"rope-pairs", "17"}}), std::string("--rope-pairs must be between 0 and 16"));
        QCOMPARE(flagError({{"uniform-start", "16"}}), std::string("--uniform-start must be between 0 and 15"));
        QCOMPARE(flagError({{"latent-dim", "x"}}), std::string("--latent-dim expects an integer, got 'x'"));
        QCOMPARE(flagError({{"kv-saving", "1.5"}}), std::string("--kv-saving must be between 0 and 1"));
        QCOMPARE(flagError({{"kv-saving", "lots"}}), std::string("--kv-saving expects a number, got 'lots'"));
        QCOMPARE(flagError({{"latent-dim", "8"}, {"kv-saving", "0.5"}}), std::string("give --latent-dim or --kv-saving, not both"));
        QCOMPARE(flagError({{"kv-budget", "100"}, {"kv-saving", "0.5"}}), std::string("give one of --latent-dim, --kv-saving or --kv-budget"));
        QCOMPARE(flagError({{"refit", ""}, {"no-refit", ""}}), std::string("give --refit or --no-refit, not both"));
        QCOMPARE(flagError({{"calib-samples", "4"}, {"calib-ids", "/tmp/x"}}),
                 std::string("give one calibration source: --calib-samples, --calib-text or --calib-ids"));
        QCOMPARE(flagError({{"calib-seq-len", "1"}}), std::string("--calib-seq-len must be between 2 and 1048576"));
        QVERIFY(calibrationFlagGiven(flags({{"calib-ids", "f"}})));
        QVERIFY(!calibrationFlagGiven(flags({{"seed", "3"}})));
    }
};

QTEST_MAIN(TestSettingsTable)
#include "tst_settings_table.moc"
