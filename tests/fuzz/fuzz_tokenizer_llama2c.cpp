// libFuzzer target: a llama2.c tokenizer.bin (max token length, then score / length / bytes records), read as a
// whole file and as the first `vocab` records, then used to encode and decode.
#include "fuzz_support.h"

#include "tokenizer/llama2c_tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::span<const std::uint8_t> bytes(data, size);
    const std::string tail(reinterpret_cast<const char*>(data) + (size > 64 ? size - 64 : 0), size > 64 ? 64 : size);
    for (std::optional<int> vocab : {std::optional<int>(), std::optional<int>(size > 0 ? data[0] : 0)}) {
        try {
            const auto tokenizer = mla::Llama2cTokenizer::fromBytes(bytes, "tokenizer.bin", vocab);
            mla::fuzz::exerciseTokenizer(*tokenizer, tail);
        } catch (const mla::Error&) {
        }
    }
    return 0;
}
