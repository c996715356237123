#pragma once

#include "util/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace mla {

nlohmann::json readJsonFile(const std::filesystem::path& path);

// Typed, checked look-ups into an untrusted JSON object: a wrong type or a missing required key is an Error that
// names the file and the key.
class JsonObject {
public:
    JsonObject(const nlohmann::json& json, std::filesystem::path file, std::string context = {});

    bool has(const std::string& key) const;
    std::int64_t integer(const std::string& key) const;
    std::optional<std::int64_t> optionalInteger(const std::string& key) const;
    double number(const std::string& key) const;
    std::optional<double> optionalNumber(const std::string& key) const;
    std::string string(const std::string& key) const;
    std::optional<std::string> optionalString(const std::string& key) const;
    std::optional<bool> optionalBool(const std::string& key) const;
    const nlohmann::json& raw() const { return m_json; }
    const std::filesystem::path& file() const { return m_file; }
    [[noreturn]] void fail(const std::string& problem) const;

private:
    const nlohmann::json* find(const std::string& key) const;
    std::string where(const std::string& key) const;

    const nlohmann::json& m_json;
    std::filesystem::path m_file;
    std::string m_context;
};

// JSON text that never throws on invalid UTF-8 coming from model data (token pieces may be partial characters).
std::string dumpJson(const nlohmann::json& json, int indent = -1);
std::string dumpJson(const nlohmann::ordered_json& json, int indent = -1);

} // namespace mla
