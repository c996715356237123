// Reading a Hugging Face tokenizer.json into a BpeTokenizer.

#include "tokenizer/bpe_tokenizer.h"

#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_util.h"

#include <nlohmann/json.hpp>

#include <limits>

namespace mla {

using nlohmann::json;

class BpeJsonReader {
public:
    BpeJsonReader(BpeTokenizer& tokenizer, const std::filesystem::path& file) : m_t(tokenizer), m_file(file) {}

    void read(const json& root, const json* config)
    {
        if (!root.is_object())
            fail("not a tokenizer.json: expected a JSON object");
        auto model = root.find("model");
        if (model == root.end() || !model->is_object())
            fail("not a tokenizer.json: missing the 'model' object");
        readModel(*model);
        if (auto added = root.find("added_tokens"); added != root.end() && !added->is_null())
            readAddedTokens(*added);
        if (auto n = root.find("normalizer"); n != root.end() && !n->is_null())
            readNormalizer(*n);
        if (auto p = root.find("pre_tokenizer"); p != root.end() && !p->is_null())
            readPreTokenizer(*p);

        const bool decoderByteLevel = root.contains("decoder") && mentions(root["decoder"], "ByteLevel");
        m_t.m_byteLevel = m_preTokenizerByteLevel || decoderByteLevel;
        m_t.m_stripSpaceAfterBos = !m_t.m_byteLevel && m_addsSpacePrefix;

        if (auto post = root.find("post_processor"); post != root.end() && !post->is_null())
            readPostProcessor(*post);
        m_t.m_bos = m_templateBos;
        m_t.m_eos = m_templateEos;
        if (config)
            readConfig(*config);
        if (!m_t.m_eos)
            m_t.m_eos = wellKnownEos();
        m_t.finish(m_file);
    }

private:
    [[noreturn]] void fail(const std::string& problem) const { throw Error(m_file, problem); }

    static bool mentions(const json& j, const std::string& type)
    {
        if (j.is_object()) {
            if (auto t = j.find("type"); t != j.end() && t->is_string() && *t == type)
                return true;
            for (const auto& [key, value] : j.items())
                if (value.is_array() || value.is_object())
                    if (mentions(value, type))
                        return true;
        } else if (j.is_array()) {
            for (const auto& e : j)
                if (mentions(e, type))
                    return true;
        }
        return false;
    }

    static std::string typeOf(const json& j)
    {
        if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
            return {};
        return j["type"].get<std::string>();
    }

    bool boolean(const json& j, const char* key, bool fallback, const std::string& where) const
    {
        auto it = j.find(key);
        if (it == j.end() || it->is_null())
            return fallback;
        if (!it->is_boolean())
            fail("'" + where + "." + key + "' must be true or false");
        return it->get<bool>();
    }

    std::string string(const json& j, const char* key, const std::string& fallback, const std::string& where) const
    {
        auto it = j.find(key);
        if (it == j.end() || it->is_null())
            return fallback;
        if (!it->is_string())
            fail("'" + where + "." + key + "' must be a string");
        return it->get<std::string>();
    }

    void readModel(const json& model)
    {
        const std::string type = string(model, "type", "BPE", "model");
        if (type != "BPE")
            fail("unsupported tokenizer model '" + type + "'; only BPE tokenizer.json files are supported");
        auto vocab = model.find("vocab");
        if (vocab == model.end() || !vocab->is_object())
            fail("missing 'model.vocab' (an object of token: id)");
        std::vector<std::pair<std::string, int>> pairs;
        pairs.reserve(vocab->size());
        for (const auto& [piece, id] : vocab->items()) {
            if (!id.is_number_integer())
                fail("'model.vocab' entry '" + piece + "' must have an integer id");
            const auto value = id.get<std::int64_t>();
            if (value < 0 || value > std::numeric_limits<int>::max())
                fail("'model.vocab' entry '" + piece + "' has id " + std::to_string(value) + ", out of range");
            pairs.emplace_back(piece, static_cast<int>(value));
        }
        m_t.setVocabulary(std::move(pairs), m_file);

        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (!string(model, key, "", "model").empty())
                fail(std::string("unsupported 'model.") + key + "' (word-piece style BPE)");
        m_t.m_byteFallback = boolean(model, "byte_fallback", false, "model");
        m_t.m_ignoreMerges = boolean(model, "ignore_merges", false, "model");
        m_t.m_fuseUnk = boolean(model, "fuse_unk", false, "model");
        const std::string unk = string(model, "unk_token", "", "model");
        if (!unk.empty())
            if (auto it = m_t.m_vocab.find(unk); it != m_t.m_vocab.end())
                m_t.m_unk = it->second;

        auto merges = model.find("merges");
        if (merges == model.end() || merges->is_null())
            return;
        if (!merges->is_array())
            fail("'model.merges' must be an array");
        m_t.m_merges.reserve(merges->size());
        std::size_t index = 0;
        for (const auto& m : *merges) {
            if (m.is_string()) {
                // The older "a b" form; tokens never hold a plain space, so it separates exactly two of them.
                const std::string& s = m.get_ref<const std::string&>();
                const std::size_t space = s.find(' ');
                if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
                    fail("merge " + std::to_string(index) + " '" + s + "' is not two tokens separated by a space");
                m_t.addMerge(s.substr(0, space), s.substr(space + 1), m_file, index);
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                m_t.addMerge(m[0].get<std::string>(), m[1].get<std::string>(), m_file, index);
            } else {
                fail("merge " + std::to_string(index) + " must be \"a b\" or [\"a\", \"b\"]");
            }
            ++index;
        }
    }

    void readAddedTokens(const json& added)
    {
        if (!added.is_array())
            fail("'added_tokens' must be an array");
        for (std::size_t i = 0; i < added.size(); ++i) {
            const json& a = added[i];
            const std::string where = "added_tokens[" + std::to_string(i) + "]";
            if (!a.is_object())
                fail("'" + where + "' must be an object");
            auto id = a.find("id");
            if (id == a.end() || !id->is_number_integer())
                fail("'" + where + ".id' must be an integer");
            const auto value = id->get<std::int64_t>();
            if (value < 0 || value > std::numeric_limits<int>::max())
                fail("'" + where + ".id' " + std::to_string(value) + " is out of range");
            const std::string content = string(a, "content", "", where);
            if (content.empty())
                fail("'" + where + ".content' must be a non-empty string");
            m_t.addAddedToken(content, static_cast<int>(value), boolean(a, "special", false, where), m_file);
        }
    }

    void readNormalizer(const json& n)
    {
        const std::string type = typeOf(n);
        if (type == "Sequence") {
            auto list = n.find("normalizers");
            if (list == n.end() || !list->is_array())
                fail("'normalizer.normalizers' must be an array");
            for (const auto& e : *list)
                readNormalizer(e);
        } else if (type == "Prepend") {
            const std::string text = string(n, "prepend", "", "normalizer");
            if (text == utf8::kSpaceMarker)
                m_addsSpacePrefix = true;
            m_t.m_normalizer.addPrepend(text);
        } else if (type == "Replace") {
            auto pattern = n.find("pattern");
            if (pattern == n.end() || !pattern->is_object() || !pattern->contains("String")
                || !(*pattern)["String"].is_string())
                fail("unsupported normalizer Replace pattern (only {\"String\": ...} is supported)");
            m_t.m_normalizer.addReplace((*pattern)["String"].get<std::string>(),
                                        string(n, "content", "", "normalizer"));
        } else if (type == "Strip") {
            m_t.m_normalizer.addStrip(boolean(n, "strip_left", true, "normalizer"),
                                      boolean(n, "strip_right", true, "normalizer"));
        } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
            // Left out on purpose: without ICU there is no normalization table, and model input is nearly always
            // NFC already.
        } else {
            fail("unsupported normalizer '" + type + "'");
        }
    }

    void readPreTokenizer(const json& p)
    {
        const std::string type = typeOf(p);
        if (type == "Sequence") {
            auto list = p.find("pretokenizers");
            if (list == p.end() || !list->is_array())
                fail("'pre_tokenizer.pretokenizers' must be an array");
            for (const auto& e : *list)
                readPreTokenizer(e);
        } else if (type == "Split") {
            auto pattern = p.find("pattern");
            if (pattern == p.end() || !pattern->is_object())
                fail("'pre_tokenizer' Split needs a pattern");
            bool literal = false;
            std::string text;
            if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
                text = (*pattern)["Regex"].get<std::string>();
            } else if (pattern->contains("String") && (*pattern)["String"].is_string()) {
                text = (*pattern)["String"].get<std::string>();
                literal = true;
            } else {
                fail("'pre_tokenizer' Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
            }
            if (boolean(p, "invert", false, "pre_tokenizer"))
                fail("unsupported pre_tokenizer Split with invert: true");
            m_t.m_preTokenizer.addSplit(std::make_shared<SplitRegex>(text, literal, m_file),
                                        behavior(string(p, "behavior", "Isolated", "pre_tokenizer")));
        } else if (type == "ByteLevel") {
            m_preTokenizerByteLevel = true;
            if (boolean(p, "add_prefix_space", true, "pre_tokenizer"))
                m_t.m_preTokenizer.addSpacePrefix();
            if (boolean(p, "use_regex", true, "pre_tokenizer"))
                m_t.m_preTokenizer.addSplit(std::make_shared<SplitRegex>(kGpt2Pattern, false, m_file),
                                            SplitBehavior::Isolated);
        } else if (type == "Metaspace") {
            const std::string replacement = string(p, "replacement", std::string(utf8::kSpaceMarker), "pre_tokenizer");
            PreTokenizer::Prepend prepend = boolean(p, "add_prefix_space", true, "pre_tokenizer")
                                                ? PreTokenizer::Prepend::Always
                                                : PreTokenizer::Prepend::Never;
            const std::string scheme = string(p, "prepend_scheme", "", "pre_tokenizer");
            if (scheme == "first")
                prepend = PreTokenizer::Prepend::First;
            else if (scheme == "never")
                prepend = PreTokenizer::Prepend::Never;
            else if (scheme == "always")
                prepend = PreTokenizer::Prepend::Always;
            else if (!scheme.empty())
                fail("unknown Metaspace prepend_scheme '" + scheme + "'");
            if (prepend != PreTokenizer::Prepend::Never)
                m_addsSpacePrefix = true;
            m_t.m_preTokenizer.addMetaspace(replacement, prepend, boolean(p, "split", true, "pre_tokenizer"));
        } else if (type == "Digits") {
            const bool individual = boolean(p, "individual_digits", false, "pre_tokenizer");
            m_t.m_preTokenizer.addSplit(std::make_shared<SplitRegex>(individual ? R"(\p{N})" : R"(\p{N}+)", false,
                                                                     m_file),
                                        SplitBehavior::Isolated);
        } else {
            fail("unsupported pre_tokenizer '" + type + "'");
        }
    }

    SplitBehavior behavior(const std::string& name) const
    {
        if (name == "Isolated")
            return SplitBehavior::Isolated;
        if (name == "Removed")
            return SplitBehavior::Removed;
        if (name == "MergedWithPrevious")
            return SplitBehavior::MergedWithPrevious;
        if (name == "MergedWithNext")
            return SplitBehavior::MergedWithNext;
        if (name == "Contiguous")
            return SplitBehavior::Contiguous;
        fail("unknown Split behavior '" + name + "'");
    }

    int checkedId(const json& value, const std::string& what) const
    {
        const auto id = value.get<std::int64_t>();
        if (id < 0 || id > std::numeric_limits<int>::max())
            fail("'" + what + "' has id " + std::to_string(id) + ", out of range");
        return static_cast<int>(id);
    }

    int specialId(const json& processor, const std::string& name) const
    {
        if (auto table = processor.find("special_tokens"); table != processor.end() && table->is_object()) {
            if (auto entry = table->find(name); entry != table->end() && entry->is_object()) {
                auto ids = entry->find("ids");
                if (ids != entry->end() && ids->is_array() && !ids->empty() && (*ids)[0].is_number_integer())
                    return checkedId((*ids)[0], "post_processor special token '" + name + "'");
            }
        }
        auto it = m_t.m_vocab.find(name);
        if (it == m_t.m_vocab.end())
            fail("'post_processor' refers to unknown special token '" + name + "'");
        return it->second;
    }

    void readPostProcessor(const json& p)
    {
        const std::string type = typeOf(p);
        if (type == "Sequence") {
            if (auto list = p.find("processors"); list != p.end() && list->is_array())
                for (const auto& e : *list)
                    readPostProcessor(e);
        } else if (type == "TemplateProcessing") {
            auto single = p.find("single");
            if (single == p.end() || !single->is_array())
                return;
            bool afterSequence = false;
            for (const auto& item : *single) {
                if (!item.is_object())
                    continue;
                if (item.contains("Sequence")) {
                    afterSequence = true;
                    continue;
                }
                auto special = item.find("SpecialToken");
                if (special == item.end() || !special->is_object() || !special->contains("id")
                    || !(*special)["id"].is_string())
                    continue;
                const int id = specialId(p, (*special)["id"].get<std::string>());
                if (!afterSequence && !m_templateBos)
                    m_templateBos = id;
                else if (afterSequence && !m_templateEos)
                    m_templateEos = id;
            }
        } else if (type == "RobertaProcessing" || type == "BertProcessing") {
            auto pairId = [&](const char* key) -> std::optional<int> {
                auto it = p.find(key);
                if (it != p.end() && it->is_array() && it->size() == 2 && (*it)[1].is_number_integer())
                    return checkedId((*it)[1], std::string("post_processor.") + key);
                return std::nullopt;
            };
            if (!m_templateBos)
                m_templateBos = pairId("cls");
            if (!m_templateEos)
                m_templateEos = pairId("sep");
        }
    }

    std::optional<int> configToken(const json& config, const char* key) const
    {
        auto it = config.find(key);
        if (it == config.end())
            return std::nullopt;
        std::string content;
        if (it->is_string())
            content = it->get<std::string>();
        else if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
            content = (*it)["content"].get<std::string>();
        auto found = m_t.m_vocab.find(content);
        if (content.empty() || found == m_t.m_vocab.end())
            return std::nullopt;
        return found->second;
    }

    // tokenizer_config.json is a hint only: what it names must exist in this vocabulary, and anything it lacks or
    // gets wrong is ignored.
    void readConfig(const json& config)
    {
        if (!config.is_object())
            return;
        if (auto eos = configToken(config, "eos_token"))
            m_t.m_eos = eos;
        auto addBos = config.find("add_bos_token");
        if (!m_t.m_bos && addBos != config.end() && addBos->is_boolean() && addBos->get<bool>())
            m_t.m_bos = configToken(config, "bos_token");
    }

    std::optional<int> wellKnownEos() const
    {
        for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"}) {
            auto it = m_t.m_vocab.find(name);
            if (it != m_t.m_vocab.end())
                return it->second;
        }
        return std::nullopt;
    }

    BpeTokenizer& m_t;
    const std::filesystem::path& m_file;
    bool m_preTokenizerByteLevel = false;
    bool m_addsSpacePrefix = false;
    std::optional<int> m_templateBos;
    std::optional<int> m_templateEos;
};

std::unique_ptr<BpeTokenizer> BpeTokenizer::fromJson(const json& root, const std::filesystem::path& file,
                                                     bool useConfigBeside)
{
    json config;
    if (useConfigBeside) {
        const auto configPath = file.parent_path() / "tokenizer_config.json";
        std::error_code ec;
        if (std::filesystem::is_regular_file(configPath, ec)) {
            try {
                config = readJsonFile(configPath);
            } catch (const Error&) {
                config = json(); // a broken hint file does not make the tokenizer unusable
            }
        }
    }
    std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
    BpeJsonReader(*t, file).read(root, config.is_object() ? &config : nullptr);
    return t;
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::fromJsonFile(const std::filesystem::path& path)
{
    return fromJson(readJsonFile(path, kMaxTokenizerFileBytes), path, true);
}

} // namespace mla
