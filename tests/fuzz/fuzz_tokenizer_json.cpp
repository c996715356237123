// libFuzzer target: a Hugging Face tokenizer.json (BPE model, added tokens, normalizer, pre-tokenizer with its
// regexes, decoder), then encoding (special-token splitting, pre-tokenization, merges) and decoding.
#include "fuzz_support.h"

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"
#include "util/json_util.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // As the readers do: nesting is checked before parsing (a deep document would overflow every recursive walk).
    try {
        mla::checkJsonNesting(std::string_view(reinterpret_cast<const char*>(data), size), "tokenizer.json");
    } catch (const mla::Error&) {
        return 0;
    }
    const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr, false);
    if (json.is_discarded())
        return 0;
    try {
        const auto tokenizer = mla::BpeTokenizer::fromJson(json, "tokenizer.json");
        mla::fuzz::exerciseTokenizer(*tokenizer, "");
        (void)tokenizer->preTokenize("Hello, world! 123 don't  stop");
    } catch (const mla::Error&) {
    }
    return 0;
}
