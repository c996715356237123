#include "tokenizer/tokenizer.h"

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_util.h"
#include "util/mapped_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace mla {

namespace {

// Tokenizers are kilobytes to a few megabytes; a larger *.bin beside a checkpoint is a checkpoint and is not even
// opened as a candidate.
constexpr std::uintmax_t kMaxTokenizerCandidateBytes = 64ull << 20;
// The largest real tokenizer files are tens of megabytes; a gigabyte file handed to loadTokenizer is a checkpoint
// picked by mistake, and parsing it as JSON or protobuf would only waste time and memory.
constexpr std::size_t kMaxTokenizerBytes = kMaxTokenizerFileBytes;

std::string lowercaseExtension(const std::filesystem::path& path)
{
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

bool startsLikeJson(std::span<const std::uint8_t> bytes)
{
    for (const std::uint8_t b : bytes) {
        if (b == ' ' || b == '\t' || b == '\n' || b == '\r')
            continue;
        return b == '{';
    }
    return false;
}

} // namespace

std::string Tokenizer::decode(std::span<const int> ids, int previous) const
{
    std::string text;
    for (const int id : ids) {
        text += decodePiece(previous, id);
        previous = id;
    }
    return text;
}

std::unique_ptr<Tokenizer> loadTokenizer(const std::filesystem::path& path)
{
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw Error(path, "is a folder, not a tokenizer file");
    const auto mapped = MappedFile::open(path);
    const auto bytes = mapped->bytes();
    if (bytes.empty())
        throw Error(path, "empty file, not a tokenizer");
    if (bytes.size() > kMaxTokenizerBytes)
        throw Error(path, std::to_string(bytes.size() >> 20) + " MiB is far too large for a tokenizer file");
    const std::string ext = lowercaseExtension(path);

    // A llama2.c tokenizer.bin whose max_token_length is 123 also starts with '{', so outside *.json a failed JSON
    // parse falls through to the binary formats.
    if (ext == ".json" || startsLikeJson(bytes)) {
        checkJsonNesting(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path, "tokenizer JSON");
        nlohmann::json root = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
        if (root.is_object() && root.contains("model"))
            return BpeTokenizer::fromJson(root, path, true);
        if (ext == ".json") {
            if (root.is_discarded())
                throw Error(path, "invalid JSON, not a tokenizer.json");
            throw Error(path, "JSON without a 'model' object, not a tokenizer.json");
        }
    }

    const std::string_view serialized(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (ext == ".model") {
        try {
            return SentencePieceTokenizer::fromBytes(serialized, path);
        } catch (const Error& sentencePieceError) {
            try {
                return Llama2cTokenizer::fromBytes(bytes, path);
            } catch (const Error&) {
                throw sentencePieceError;
            }
        }
    }
    try {
        return Llama2cTokenizer::fromBytes(bytes, path);
    } catch (const Error& llama2cError) {
        try {
            return SentencePieceTokenizer::fromBytes(serialized, path);
        } catch (const Error&) {
            throw llama2cError;
        }
    }
}

std::optional<std::filesystem::path> findTokenizerNextTo(const std::filesystem::path& checkpoint)
{
    std::error_code ec;
    std::filesystem::path folder =
        std::filesystem::is_directory(checkpoint, ec) ? checkpoint : checkpoint.parent_path();
    if (folder.empty())
        folder = ".";
    auto isCheckpoint = [&](const std::filesystem::path& p) {
        std::error_code e;
        return std::filesystem::equivalent(p, checkpoint, e) && !e;
    };
    auto usable = [&](const std::filesystem::path& p) {
        std::error_code e;
        return std::filesystem::is_regular_file(p, e) && !isCheckpoint(p);
    };

    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"}) {
        const auto p = folder / name;
        if (usable(p))
            return p;
    }

    std::vector<std::filesystem::path> candidates;
    for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        const auto& p = it->path();
        std::error_code e;
        if (lowercaseExtension(p) == ".bin" && usable(p)
            && std::filesystem::file_size(p, e) <= kMaxTokenizerCandidateBytes && !e)
            candidates.push_back(p);
    }
    std::sort(candidates.begin(), candidates.end());
    for (const auto& p : candidates) {
        try {
            Llama2cTokenizer::fromFile(p);
            return p;
        } catch (const Error&) {
            // Another checkpoint or unrelated data: not a tokenizer, keep looking.
        }
    }
    return std::nullopt;
}

std::unique_ptr<Tokenizer> tokenizerFromEmbedded(const EmbeddedVocabulary& vocab, const std::filesystem::path& file)
{
    if (vocab.model == "llama")
        return Llama2cTokenizer::fromEmbedded(vocab, file);
    if (vocab.model == "gpt2")
        return BpeTokenizer::fromEmbedded(vocab, file);
    if (vocab.model.empty())
        throw Error(file, "no tokenizer.ggml.model in the file");
    throw Error(file, "unsupported tokenizer model '" + vocab.model
                          + "' (tokenizer.ggml.model); supported are 'llama' and 'gpt2'");
}

} // namespace mla
