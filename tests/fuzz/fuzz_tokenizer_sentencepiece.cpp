// libFuzzer target: a SentencePiece tokenizer.model (a serialized ModelProto), loaded through libsentencepiece and
// used to encode and decode. libsentencepiece itself is not instrumented; what is fuzzed is that our wrapper turns
// every malformed model into an mla::Error and never indexes past the vocabulary it was given.
#include "fuzz_support.h"

#include "tokenizer/sentencepiece_tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view serialized(reinterpret_cast<const char*>(data), size);
    try {
        const auto tokenizer = mla::SentencePieceTokenizer::fromBytes(serialized, "tokenizer.model");
        mla::fuzz::exerciseTokenizer(*tokenizer, "");
    } catch (const mla::Error&) {
    }
    return 0;
}
