#pragma once

#include "util/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mla {

// JSON nested deeper than this is refused before parsing: every recursive walk over a parsed document (copies,
// dumps, our own readers) would otherwise overflow the stack on a hostile file. Real configs and tokenizers nest
// fewer than ten levels.
inline constexpr int kMaxJsonDepth = 128;

// Throws an Error naming `file` when `text` nests arrays and objects deeper than kMaxJsonDepth (a linear scan).
void checkJsonNesting(std::string_view text, const std::filesystem::path& file, const char* what = "JSON");

// Reads an untrusted JSON file: a regular file only (a FIFO or device is an Error at once), at most `maxBytes`
// (config.json and index files are kilobytes; 16 MiB by default), nesting checked, then parsed.
nlohmann::json readJsonFile(const std::filesystem::path& path, std::uint64_t maxBytes = 16ull << 20);

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
