#include "formats/gguf_vocabulary.h"

#include "formats/gguf_writer.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/gguf_token_type.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/json_util.h"

#include <sentencepiece_processor.h>

#include <array>
#include <fstream>
#include <set>
#include <sstream>

namespace mla {
namespace {

// Pre-tokenizer types llama.cpp and our embedded-vocabulary reader both implement, tried in this order.
constexpr const char* kPreTokenizers[] = {"gpt-2", "llama-bpe", "qwen2", "smollm"};

std::string shortText(const std::string& text)
{
    std::string s = text.size() > 40 ? text.substr(0, 40) + "..." : text;
    return "'" + utf8::replaceAll(utf8::replaceAll(s, "\n", "\\n"), "\t", "\\t") + "'";
}

std::string idList(const std::vector<int>& ids)
{
    std::string s = "[";
    for (std::size_t i = 0; i < ids.size() && i < 16; ++i)
        s += (i ? " " : "") + std::to_string(ids[i]);
    return s + (ids.size() > 16 ? " ...]" : "]");
}

// Whether every character of `text` has a piece or byte tokens in a "llama" vocabulary. llama.cpp's SentencePiece
// tokenizer throws on a character it can neither match nor spell in bytes, so such texts are not probes.
bool representable(const EmbeddedVocabulary& v, const std::set<std::string>& pieces, const std::string& text)
{
    std::set<unsigned char> bytes;
    for (std::size_t i = 0; i < v.tokens.size(); ++i) {
        if (auto b = utf8::parseBytePiece(v.tokens[i]))
            bytes.insert(*b);
    }
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t n = std::max<std::size_t>(1, utf8::charLength(text, pos));
        const std::string c = text.substr(pos, n);
        if (!pieces.count(utf8::replaceAll(c, " ", utf8::kSpaceMarker))) {
            for (unsigned char b : c) {
                if (!bytes.count(b))
                    return false;
            }
        }
        pos += n;
    }
    return true;
}

// Probe texts for a vocabulary: the common probes it can represent, and texts made of its own pieces (so that a
// vocabulary of Chinese characters, say, is checked on text it was made for).
std::vector<std::string> probesFor(const EmbeddedVocabulary& v)
{
    std::vector<std::string> probes;
    std::set<std::string> pieces;
    for (std::size_t i = 0; i < v.tokens.size(); ++i) {
        const std::int32_t type = v.types.empty() ? gguf_token::normal : v.types[i];
        if (type == gguf_token::normal)
            pieces.insert(v.tokens[i]);
    }
    for (const auto& p : tokenizerProbeTexts()) {
        if (v.model != "llama" || representable(v, pieces, p))
            probes.push_back(p);
    }
    std::string joined;
    std::string spaced;
    std::size_t taken = 0;
    for (std::size_t i = 0; i < v.tokens.size() && taken < 200; ++i) {
        const std::int32_t type = v.types.empty() ? gguf_token::normal : v.types[i];
        if (type != gguf_token::normal || v.tokens[i].empty())
            continue;
        std::string text = v.model == "llama" ? utf8::replaceAll(v.tokens[i], utf8::kSpaceMarker, " ") : v.tokens[i];
        if (v.model != "llama") {
            auto decoded = byteLevelDecode(v.tokens[i]);
            if (!decoded)
                continue;
            text = *decoded;
        }
        joined += text;
        if (!spaced.empty())
            spaced += " ";
        spaced += text;
        ++taken;
    }
    probes.push_back(joined);
    if (v.model != "llama" || pieces.count(std::string(utf8::kSpaceMarker)) || representable(v, pieces, spaced))
        probes.push_back(spaced);
    return probes;
}

// The first probe on which `candidate` (read back as our engine reads a GGUF) and `source` disagree.
std::optional<std::string> firstDifference(const Tokenizer& source, const Tokenizer& candidate,
                                           const std::vector<std::string>& probes)
{
    for (const auto& text : probes) {
        const auto a = source.encode(text, false);
        const auto b = candidate.encode(text, false);
        if (a != b)
            return "on " + shortText(text) + " the source gives " + idList(a) + ", the embedded vocabulary " + idList(b);
    }
    return std::nullopt;
}

void padTo(EmbeddedVocabulary& v, std::int64_t modelVocab, const std::filesystem::path& file)
{
    const auto n = static_cast<std::int64_t>(v.tokens.size());
    if (n > modelVocab)
        throw Error(file, "tokenizer has " + std::to_string(n) + " tokens, more than the model's vocabulary of "
                              + std::to_string(modelVocab));
    for (std::int64_t id = n; id < modelVocab; ++id) {
        v.tokens.push_back("[PAD" + std::to_string(id) + "]");
        v.types.push_back(gguf_token::unused);
        if (!v.scores.empty())
            v.scores.push_back(-1000.0f);
    }
}

// Appends the byte tokens a "llama" vocabulary lacks (see GgufTokenizer::addedByteTokens).
void addMissingByteTokens(GgufTokenizer& t)
{
    EmbeddedVocabulary& v = t.vocab;
    if (v.model != "llama")
        return;
    std::array<bool, 256> present{};
    for (std::size_t i = 0; i < v.tokens.size(); ++i) {
        if (auto b = utf8::parseBytePiece(v.tokens[i]))
            present[*b] = true;
    }
    for (int b = 0; b < 256; ++b) {
        if (present[static_cast<std::size_t>(b)])
            continue;
        v.tokens.push_back(utf8::bytePiece(static_cast<unsigned char>(b)));
        v.types.push_back(gguf_token::byte);
        if (!v.scores.empty())
            v.scores.push_back(0.0f);
        ++t.addedByteTokens;
    }
}

std::optional<int> idOf(const EmbeddedVocabulary& v, const std::string& piece)
{
    for (std::size_t i = 0; i < v.tokens.size(); ++i) {
        if (v.tokens[i] == piece)
            return static_cast<int>(i);
    }
    return std::nullopt;
}

// tokenizer_config.json next to the tokenizer: chat templates, padding and add_eos (hints: what does not fit is
// ignored, as the tokenizer reader does).
void readTokenizerConfig(const std::filesystem::path& tokenizerFile, GgufTokenizer& out)
{
    const auto path = tokenizerFile.parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        return;
    nlohmann::json config;
    try {
        config = readJsonFile(path);
    } catch (const Error&) {
        return;
    }
    if (!config.is_object())
        return;
    if (auto t = config.find("chat_template"); t != config.end()) {
        if (t->is_string()) {
            out.chatTemplates.emplace_back("", t->get<std::string>());
        } else if (t->is_array()) {
            // The named form: [{"name": "default", "template": ...}, {"name": "tool_use", ...}].
            for (const auto& e : *t) {
                if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string()
                    || !e["template"].is_string())
                    continue;
                const std::string name = e["name"].get<std::string>();
                out.chatTemplates.emplace_back(name == "default" ? "" : name, e["template"].get<std::string>());
            }
        }
    }
    auto tokenContent = [&](const char* key) -> std::optional<std::string> {
        auto it = config.find(key);
        if (it == config.end())
            return std::nullopt;
        if (it->is_string())
            return it->get<std::string>();
        if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
            return (*it)["content"].get<std::string>();
        return std::nullopt;
    };
    if (auto pad = tokenContent("pad_token"))
        out.pad = idOf(out.vocab, *pad);
    if (auto addEos = config.find("add_eos_token"); addEos != config.end() && addEos->is_boolean())
        out.addEos = addEos->get<bool>();
}

GgufTokenizer fromLlama2c(const Llama2cTokenizer& t)
{
    // As llama.cpp's convert-llama2c-to-ggml: ids 0/1/2 are <unk>/<s>/</s>, an empty piece is a control token,
    // <0xXX> a byte token, and spaces are spelled U+2581.
    GgufTokenizer out;
    EmbeddedVocabulary& v = out.vocab;
    v.model = "llama";
    const int n = t.vocabSize();
    for (int id = 0; id < n; ++id) {
        std::string text = t.piece(id);
        std::int32_t type = gguf_token::normal;
        if (id == 0) {
            text = "<unk>";
            type = gguf_token::unknown;
        } else if (id == t.bosId()) {
            text = "<s>";
            type = gguf_token::control;
        } else if (id == t.eosId()) {
            text = "</s>";
            type = gguf_token::control;
        } else if (text.empty()) {
            type = gguf_token::control;
        } else if (utf8::parseBytePiece(text)) {
            type = gguf_token::byte;
        }
        v.tokens.push_back(utf8::replaceAll(text, " ", utf8::kSpaceMarker));
        v.scores.push_back(t.score(id));
        v.types.push_back(type);
    }
    v.unk = 0;
    v.bos = t.bosId();
    v.eos = t.eosId();
    v.addBos = true;
    out.addEos = false;
    // run.c prepends the piece " " only when the vocabulary has one; llama.cpp's dummy prefix would otherwise look
    // for a byte token it may not have.
    out.addSpacePrefix = idOf(v, std::string(utf8::kSpaceMarker)).has_value();
    return out;
}

GgufTokenizer fromSentencePiece(const std::filesystem::path& file)
{
    std::ifstream in(file, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    sentencepiece::SentencePieceProcessor sp;
    sentencepiece::util::Status status;
    try {
        status = sp.LoadFromSerializedProto(bytes.str());
    } catch (const std::exception& e) {
        throw Error(file, std::string("not a valid SentencePiece model: ") + e.what());
    }
    if (!status.ok())
        throw Error(file, "not a valid SentencePiece model: " + status.ToString());
    // As llama.cpp's convert_hf_to_gguf.py (_create_vocab_sentencepiece): piece, score, type from the model.
    GgufTokenizer out;
    EmbeddedVocabulary& v = out.vocab;
    v.model = "llama";
    for (int id = 0; id < sp.GetPieceSize(); ++id) {
        std::int32_t type = gguf_token::normal;
        if (sp.IsUnknown(id))
            type = gguf_token::unknown;
        else if (sp.IsControl(id))
            type = gguf_token::control;
        else if (sp.IsUnused(id))
            type = gguf_token::unused;
        else if (sp.IsByte(id))
            type = gguf_token::byte;
        v.tokens.push_back(sp.IdToPiece(id));
        v.scores.push_back(sp.GetScore(id));
        v.types.push_back(type);
    }
    auto optionalId = [](int id) { return id >= 0 ? std::optional<int>(id) : std::nullopt; };
    v.bos = optionalId(sp.bos_id());
    v.eos = optionalId(sp.eos_id());
    v.unk = optionalId(sp.unk_id());
    out.pad = optionalId(sp.pad_id());
    v.addBos = true;
    out.addEos = false;
    // The normalizer spec is not reachable through the installed headers; the dummy prefix shows in an encoding.
    std::vector<std::string> pieces;
    out.addSpacePrefix = sp.Encode("a", &pieces).ok() && !pieces.empty() && pieces.front().starts_with(utf8::kSpaceMarker);
    return out;
}

GgufTokenizer fromTokenizerJson(const std::filesystem::path& file, const BpeTokenizer& source)
{
    if (!source.byteLevel())
        throw Error(file, "a SentencePiece-style tokenizer.json (pieces with U+2581 and byte fallback) cannot be "
                          "embedded as llama.cpp reads it; give the model's tokenizer.model (--tokenizer FILE)");
    const nlohmann::json root = readJsonFile(file);
    const nlohmann::json& model = root.at("model");
    std::map<int, std::pair<std::string, std::int32_t>> byId;
    for (const auto& [piece, id] : model.at("vocab").items())
        byId[id.get<int>()] = {piece, gguf_token::normal};
    if (auto added = root.find("added_tokens"); added != root.end() && added->is_array()) {
        for (const auto& a : *added) {
            const bool special = a.contains("special") && a["special"].is_boolean() && a["special"].get<bool>();
            byId[a.at("id").get<int>()] = {a.at("content").get<std::string>(), special ? gguf_token::control : gguf_token::userDefined};
        }
    }
    GgufTokenizer out;
    EmbeddedVocabulary& v = out.vocab;
    v.model = "gpt2";
    const int n = byId.empty() ? 0 : byId.rbegin()->first + 1;
    for (int id = 0; id < n; ++id) {
        auto it = byId.find(id);
        v.tokens.push_back(it != byId.end() ? it->second.first : "[PAD" + std::to_string(id) + "]");
        v.types.push_back(it != byId.end() ? it->second.second : gguf_token::unused);
    }
    if (auto merges = model.find("merges"); merges != model.end() && merges->is_array()) {
        for (const auto& m : *merges)
            v.merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
    if (auto unk = model.find("unk_token"); unk != model.end() && unk->is_string())
        v.unk = idOf(v, unk->get<std::string>());
    v.bos = source.bosId();
    v.eos = source.eosId();
    v.addBos = source.bosId().has_value();
    out.addEos = false;
    return out;
}

} // namespace

const std::vector<std::string>& tokenizerProbeTexts()
{
    static const std::vector<std::string> probes = {
        "Once upon a time, there was a little girl named Lily.",
        "Hello world",
        " leading space, trailing space ",
        "  two  spaces,\tone tab\nand a newline\n\n",
        "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
        "3 33 333 3333 33333 3.14 2024-01-01",
        "IT'S 12 apples,the end;HE'LL see",
        "MixedCASE words, UPPER and lower; punctuation!?... ------=====",
        "caf\xC3\xA9 na\xC3\xAFve \xE4\xBD\xA0\xE5\xA5\xBD \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE \xF0\x9F\xA6\x99",
    };
    return probes;
}

GgufTokenizer ggufTokenizerFromFile(const std::filesystem::path& tokenizerFile, std::int64_t modelVocab)
{
    const std::unique_ptr<Tokenizer> source = loadTokenizer(tokenizerFile);
    GgufTokenizer out;
    if (const auto* llama2c = dynamic_cast<const Llama2cTokenizer*>(source.get())) {
        out = fromLlama2c(*llama2c);
        out.source = "llama2.c tokenizer " + tokenizerFile.filename().string();
    } else if (source->kind() == "sentencepiece") {
        out = fromSentencePiece(tokenizerFile);
        out.source = "SentencePiece " + tokenizerFile.filename().string();
    } else if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(source.get())) {
        // A SentencePiece-style tokenizer.json (Llama 2's) is the conversion of a tokenizer.model, which llama.cpp
        // reads as its "llama" vocabulary: take that when it lies beside.
        std::error_code ec;
        const auto sentencePiece = tokenizerFile.parent_path() / "tokenizer.model";
        if (!bpe->byteLevel() && std::filesystem::is_regular_file(sentencePiece, ec))
            return ggufTokenizerFromFile(sentencePiece, modelVocab);
        out = fromTokenizerJson(tokenizerFile, *bpe);
        out.source = "byte-level BPE " + tokenizerFile.filename().string();
    } else {
        throw Error(tokenizerFile, "internal: tokenizer kind '" + source->kind() + "' cannot be embedded in a GGUF");
    }
    readTokenizerConfig(tokenizerFile, out);
    out.source += " (" + std::to_string(out.vocab.tokens.size()) + " tokens)";

    // What our reader makes of the embedded vocabulary must encode as the source does; for a byte-level BPE
    // vocabulary this also finds llama.cpp's name for its pre-tokenizer.
    std::vector<std::string> probes = probesFor(out.vocab);
    if (source->kind() == "sentencepiece") {
        // SentencePiece's own normalizer trims and collapses whitespace; llama.cpp (and so every GGUF reader) does
        // not, so only texts that normalizer leaves alone can agree.
        std::erase_if(probes, [](const std::string& text) {
            return text.find("  ") != std::string::npos || text.find_first_of("\t\n") != std::string::npos
                   || text.starts_with(' ') || text.ends_with(' ');
        });
    }
    if (out.vocab.model == "gpt2") {
        std::string differences;
        bool found = false;
        for (const char* pre : kPreTokenizers) {
            out.vocab.preTokenizer = pre;
            const auto candidate = tokenizerFromEmbedded(out.vocab, tokenizerFile);
            const auto difference = firstDifference(*source, *candidate, probes);
            if (!difference) {
                found = true;
                break;
            }
            differences += std::string("\n  ") + pre + ": " + *difference;
        }
        if (!found)
            throw Error(tokenizerFile, "its pre-tokenizer is none that llama.cpp names (gpt-2, llama-bpe, qwen2, smollm); "
                                       "embedded, it would tokenize differently:" + differences);
    } else {
        const auto candidate = tokenizerFromEmbedded(out.vocab, tokenizerFile);
        if (const auto difference = firstDifference(*source, *candidate, probes))
            throw Error(tokenizerFile, "embedded as a GGUF \"llama\" vocabulary it would tokenize differently: " + *difference);
    }
    padTo(out.vocab, modelVocab, tokenizerFile);
    addMissingByteTokens(out);
    return out;
}

GgufTokenizer ggufTokenizerFromGguf(const std::filesystem::path& ggufFile, std::int64_t modelVocab)
{
    const GgufFile gguf = GgufFile::open(ggufFile);
    GgufTokenizer out;
    for (const auto& [key, value] : gguf.metadata()) {
        if (!key.starts_with("tokenizer."))
            continue;
        if (value.type == GgufValueType::Array && value.arrayType == GgufValueType::Array)
            throw Error(ggufFile, "metadata '" + key + "' nests arrays, which the exporter does not copy");
        out.copied.emplace_back(key, value);
    }
    const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GgufValueType::Array || tokens->arrayType != GgufValueType::String)
        throw Error(ggufFile, "has no embedded vocabulary (tokenizer.ggml.tokens) to copy");
    if (static_cast<std::int64_t>(tokens->strings.size()) != modelVocab)
        throw Error(ggufFile, "embedded vocabulary has " + std::to_string(tokens->strings.size())
                                  + " tokens, the model " + std::to_string(modelVocab));
    const GgufValue* model = gguf.find("tokenizer.ggml.model");
    out.vocab.model = model && model->type == GgufValueType::String ? model->string : "";
    out.vocab.tokens = tokens->strings;
    out.source = "embedded in " + ggufFile.filename().string() + " (" + std::to_string(tokens->strings.size()) + " tokens)";
    return out;
}

std::vector<std::pair<std::string, GgufValue>> ggufTokenizerMetadata(const GgufTokenizer& t)
{
    if (!t.copied.empty())
        return t.copied;
    const EmbeddedVocabulary& v = t.vocab;
    std::vector<std::pair<std::string, GgufValue>> out;
    out.emplace_back("tokenizer.ggml.model", ggufString(v.model));
    if (v.model == "gpt2")
        out.emplace_back("tokenizer.ggml.pre", ggufString(v.preTokenizer));
    out.emplace_back("tokenizer.ggml.tokens", ggufStringArray(v.tokens));
    if (!v.scores.empty())
        out.emplace_back("tokenizer.ggml.scores", ggufF32Array(v.scores));
    out.emplace_back("tokenizer.ggml.token_type", ggufI32Array(v.types));
    if (v.model == "gpt2")
        out.emplace_back("tokenizer.ggml.merges", ggufStringArray(v.merges));
    auto id = [&](const char* key, const std::optional<int>& value) {
        if (value)
            out.emplace_back(key, ggufU32(static_cast<std::uint32_t>(*value)));
    };
    id("tokenizer.ggml.bos_token_id", v.bos);
    id("tokenizer.ggml.eos_token_id", v.eos);
    id("tokenizer.ggml.unknown_token_id", v.unk);
    id("tokenizer.ggml.padding_token_id", t.pad);
    if (v.addBos)
        out.emplace_back("tokenizer.ggml.add_bos_token", ggufBool(*v.addBos));
    if (t.addEos)
        out.emplace_back("tokenizer.ggml.add_eos_token", ggufBool(*t.addEos));
    if (t.addSpacePrefix)
        out.emplace_back("tokenizer.ggml.add_space_prefix", ggufBool(*t.addSpacePrefix));
    for (const auto& [name, text] : t.chatTemplates)
        out.emplace_back(name.empty() ? "tokenizer.chat_template" : "tokenizer.chat_template." + name, ggufString(text));
    return out;
}

} // namespace mla
