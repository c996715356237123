#include "util/json_util.h"

#include "util/input_file.h"

#include <cmath>

namespace mla {

void checkJsonNesting(std::string_view text, const std::filesystem::path& file, const char* what)
{
    int depth = 0;
    bool inString = false;
    bool escaped = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (inString) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                inString = false;
            continue;
        }
        if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            if (++depth > kMaxJsonDepth)
                throw Error(file, std::string(what) + " nests objects and arrays more than " + std::to_string(kMaxJsonDepth)
                                      + " levels deep (at byte " + std::to_string(i) + "); refusing it");
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
}

nlohmann::json readJsonFile(const std::filesystem::path& path, std::uint64_t maxBytes)
{
    const std::string text = readInputFile(path, maxBytes, "JSON file");
    checkJsonNesting(text, path);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(path, std::string("invalid JSON: ") + e.what());
    }
}

JsonObject::JsonObject(const nlohmann::json& json, std::filesystem::path file, std::string context)
    : m_json(json), m_file(std::move(file)), m_context(std::move(context))
{
    if (!m_json.is_object())
        fail("expected a JSON object" + (m_context.empty() ? std::string() : " at '" + m_context + "'"));
}

const nlohmann::json* JsonObject::find(const std::string& key) const
{
    auto it = m_json.find(key);
    if (it == m_json.end() || it->is_null())
        return nullptr;
    return &*it;
}

std::string JsonObject::where(const std::string& key) const
{
    return m_context.empty() ? key : m_context + "." + key;
}

void JsonObject::fail(const std::string& problem) const
{
    throw Error(m_file, problem);
}

bool JsonObject::has(const std::string& key) const
{
    return find(key) != nullptr;
}

std::optional<std::int64_t> JsonObject::optionalInteger(const std::string& key) const
{
    const nlohmann::json* v = find(key);
    if (!v)
        return std::nullopt;
    if (v->is_number_integer())
        return v->get<std::int64_t>();
    if (v->is_number_float()) {
        const double d = v->get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
            return static_cast<std::int64_t>(d);
    }
    fail("'" + where(key) + "' must be an integer");
}

std::int64_t JsonObject::integer(const std::string& key) const
{
    auto v = optionalInteger(key);
    if (!v)
        fail("missing '" + where(key) + "'");
    return *v;
}

std::optional<double> JsonObject::optionalNumber(const std::string& key) const
{
    const nlohmann::json* v = find(key);
    if (!v)
        return std::nullopt;
    if (!v->is_number())
        fail("'" + where(key) + "' must be a number");
    return v->get<double>();
}

double JsonObject::number(const std::string& key) const
{
    auto v = optionalNumber(key);
    if (!v)
        fail("missing '" + where(key) + "'");
    return *v;
}

std::optional<std::string> JsonObject::optionalString(const std::string& key) const
{
    const nlohmann::json* v = find(key);
    if (!v)
        return std::nullopt;
    if (!v->is_string())
        fail("'" + where(key) + "' must be a string");
    return v->get<std::string>();
}

std::string JsonObject::string(const std::string& key) const
{
    auto v = optionalString(key);
    if (!v)
        fail("missing '" + where(key) + "'");
    return *v;
}

std::optional<bool> JsonObject::optionalBool(const std::string& key) const
{
    const nlohmann::json* v = find(key);
    if (!v)
        return std::nullopt;
    if (!v->is_boolean())
        fail("'" + where(key) + "' must be true or false");
    return v->get<bool>();
}

std::string dumpJson(const nlohmann::json& json, int indent)
{
    return json.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace mla

namespace mla {

std::string dumpJson(const nlohmann::ordered_json& json, int indent)
{
    return json.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

} // namespace mla
