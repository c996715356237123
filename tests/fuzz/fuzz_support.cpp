#include "fuzz_support.h"

#include "engine/transformer.h"

#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace mla::fuzz {
namespace {

constexpr std::int64_t kMaxExercisedWeightBytes = 8 << 20;
constexpr int kMaxDecodedPieces = 4096;

const char* const kSampleTexts[] = {
    "Once upon a time, there was a little girl.",
    " leading space and  double  spaces\n\nand newlines\t",
    "Ünïcödé: 日本語 🙂 <s></s><unk><|endoftext|> <0x0A>",
    "",
};

} // namespace

std::filesystem::path scratchDir()
{
    // Never destroyed: the atexit handler that removes the folder runs after function-local statics are destroyed.
    static const std::filesystem::path* const dir = [] {
        const char* base = std::getenv("TMPDIR");
        auto* d = new std::filesystem::path(std::filesystem::path(base && *base ? base : "/tmp")
                                            / ("mla-fuzz-" + std::to_string(::getpid())));
        std::filesystem::create_directories(*d);
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratchDir(), ec);
        });
        return d;
    }();
    return *dir;
}

std::filesystem::path writeScratchFile(const std::string& name, const std::uint8_t* data, std::size_t size)
{
    const std::filesystem::path path = scratchDir() / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out)
        std::abort(); // the harness itself failed: not a finding
    return path;
}

void exerciseModel(const Model& model)
{
    (void)model.parameterCount();
    (void)model.config.kvElementsPerToken();
    if (model.weightBytes() > kMaxExercisedWeightBytes)
        return;
    const Transformer transformer(model);
    KvCache cache = transformer.newCache(2);
    const int first = model.config.bosId.value_or(0);
    const int tokens[] = {first < model.config.vocab ? first : 0};
    const MatrixRM logits = transformer.forward(tokens, cache, Logits::Last);
    (void)logits;
}

void exerciseTokenizer(const Tokenizer& tokenizer, const std::string& extraText)
{
    (void)tokenizer.kind();
    (void)tokenizer.bosId();
    (void)tokenizer.eosId();
    const int n = tokenizer.vocabSize();
    for (int id = 0; id < n && id < kMaxDecodedPieces; ++id) {
        (void)tokenizer.piece(id);
        (void)tokenizer.isSpecial(id);
        (void)tokenizer.decodePiece(id == 0 ? -1 : id - 1, id);
    }
    for (const char* text : kSampleTexts) {
        const std::vector<int> ids = tokenizer.encode(text, true);
        (void)tokenizer.decode(ids);
    }
    const std::vector<int> ids = tokenizer.encode(extraText, false);
    (void)tokenizer.decode(ids);
}

} // namespace mla::fuzz
