// The tokenizer a GGUF export embeds, in llama.cpp's tokenizer.* keys. References: llama.cpp's own converters (its
// convert-llama2c-to-ggml output for tok512.bin is tests/data/models/stories260K/stories260K.gguf, compared in
// tst_gguf_export; its convert_hf_to_gguf.py rules for SentencePiece types and byte-level BPE added tokens), and
// the source tokenizers themselves: read back from the metadata, every vocabulary encodes the probe texts as its
// source does. Each byte-level BPE family gets llama.cpp's name for its pre-tokenizer; a tokenizer_config.json adds
// the chat template, padding and EOS; what llama.cpp would read differently is refused with the reason.
#include "common/expect_error.h"
#include "common/test_support.h"
#include "core/formats/gguf_test_fixtures.h"

#include "formats/gguf_vocabulary.h"
#include "formats/gguf_writer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

using namespace mla;
namespace fs = std::filesystem;

namespace {

const GgufValue* findKey(const std::vector<std::pair<std::string, GgufValue>>& entries, const std::string& key)
{
    for (const auto& [k, v] : entries) {
        if (k == key)
            return &v;
    }
    return nullptr;
}

using test::expectError;

} // namespace

class TestGgufVocabulary : public QObject {
    Q_OBJECT
private slots:
    void llama2cVocabulary();
    void characterVocabularyGetsByteTokens();
    void sentencePieceVocabulary();
    void bpeFamilies_data();
    void bpeFamilies();
    void refusedTokenizers();
    void paddedToTheModel();
};

void TestGgufVocabulary::llama2cVocabulary()
{
    const GgufTokenizer t = ggufTokenizerFromFile(test::demoDir() / "tok512.bin", 512);
    QCOMPARE(t.vocab.model, std::string("llama"));
    QCOMPARE(t.vocab.tokens.size(), std::size_t(512));
    QCOMPARE(t.vocab.tokens[1], std::string("<s>"));
    QCOMPARE(t.vocab.types[1], 3);                             // control
    QCOMPARE(t.vocab.types[3], 6);                             // <0x00>: byte
    QCOMPARE(t.vocab.tokens[259], std::string("\xE2\x96\x81t")); // " t", with U+2581 for the space
    QCOMPARE(t.addedByteTokens, std::int64_t(0));
    QCOMPARE(t.addSpacePrefix, std::optional<bool>(true));
    const auto entries = ggufTokenizerMetadata(t);
    QCOMPARE(findKey(entries, "tokenizer.ggml.model")->string, std::string("llama"));
    QCOMPARE(findKey(entries, "tokenizer.ggml.bos_token_id")->integer, std::int64_t(1));
    QCOMPARE(findKey(entries, "tokenizer.ggml.eos_token_id")->integer, std::int64_t(2));
    QCOMPARE(findKey(entries, "tokenizer.ggml.add_bos_token")->boolean, true);
    QVERIFY(!findKey(entries, "tokenizer.ggml.merges"));
    QVERIFY(!findKey(entries, "tokenizer.ggml.pre"));
    QCOMPARE(findKey(entries, "tokenizer.ggml.scores")->numbers.size(), std::size_t(512));
}

void TestGgufVocabulary::characterVocabularyGetsByteTokens()
{
    // poem_tok.bin: 2048 characters, no byte tokens and no " " piece.
    const GgufTokenizer t = ggufTokenizerFromFile(test::modelsDir() / "poem5L" / "poem_tok.bin", 2048);
    QCOMPARE(t.addedByteTokens, std::int64_t(256));
    QCOMPARE(t.vocab.tokens.size(), std::size_t(2304));
    QCOMPARE(t.vocab.tokens[2048], std::string("<0x00>"));
    QCOMPARE(t.vocab.tokens[2303], std::string("<0xFF>"));
    QCOMPARE(t.vocab.types[2100], 6);
    // It has a " " piece (id 13), so run.c's dummy prefix applies, and llama.cpp's must too.
    QCOMPARE(t.vocab.tokens[13], std::string("\xE2\x96\x81"));
    QCOMPARE(t.addSpacePrefix, std::optional<bool>(true));
    // Read back, text inside the vocabulary tokenizes as the source does; a character outside it now falls back to
    // byte tokens instead of one <unk>.
    const auto embedded = tokenizerFromEmbedded(t.vocab, "poem.gguf");
    const auto source = loadTokenizer(test::modelsDir() / "poem5L" / "poem_tok.bin");
    const std::string verse = "\xE5\xBA\x8A\xE5\x89\x8D\xE6\x98\x8E\xE6\x9C\x88\xE5\x85\x89";
    QCOMPARE(embedded->encode(verse, true), source->encode(verse, true));
    QCOMPARE(embedded->encode("A", false), (std::vector<int>{13, 2048 + 'A'}));
    QCOMPARE(source->encode("A", false), (std::vector<int>{13, 0}));
}

void TestGgufVocabulary::sentencePieceVocabulary()
{
    const fs::path model = test::sourceDir() / "data" / "tokenizers" / "tiny_bpe.model";
    const GgufTokenizer t = ggufTokenizerFromFile(model, 400);
    QCOMPARE(t.vocab.model, std::string("llama"));
    QCOMPARE(t.vocab.tokens.size(), std::size_t(400)); // 384 pieces, padded to the model's 400
    QCOMPARE(t.vocab.tokens[390], std::string("[PAD390]"));
    QCOMPARE(t.vocab.types[390], 5);
    QCOMPARE(t.vocab.scores[390], -1000.0f);
    QCOMPARE(t.addedByteTokens, std::int64_t(0)); // byte fallback pieces are there
    QCOMPARE(t.vocab.unk, std::optional<int>(0));
    QCOMPARE(t.vocab.types[0], 2);
    int bytes = 0;
    for (auto type : t.vocab.types)
        bytes += type == 6;
    QCOMPARE(bytes, 256);
    const auto source = loadTokenizer(model);
    QCOMPARE(t.vocab.bos, source->bosId());
    QCOMPARE(t.vocab.eos, source->eosId());
    // Read back as our engine reads a GGUF "llama" vocabulary: the same ids as libsentencepiece.
    const auto embedded = tokenizerFromEmbedded(t.vocab, "sp.gguf");
    for (const char* text : {"Once upon a time, there was a little girl named Lily.", "A cat sat on a mat."})
        QCOMPARE(embedded->encode(text, true), source->encode(text, true));
}

void TestGgufVocabulary::bpeFamilies_data()
{
    QTest::addColumn<QString>("family");
    for (const char* family : test::kFixturePreTokenizers)
        QTest::newRow(family) << QString(family);
}

void TestGgufVocabulary::bpeFamilies()
{
    QFETCH(QString, family);
    const fs::path dir = test::scratchDir("bpe-" + family.toStdString());
    const fs::path file = test::writeBpeTokenizer(dir, family.toStdString());
    const int n = test::fixtureBpeVocabSize();
    const GgufTokenizer t = ggufTokenizerFromFile(file, n + 12);
    QCOMPARE(t.vocab.model, std::string("gpt2"));
    QCOMPARE(t.vocab.preTokenizer, family.toStdString());
    QCOMPARE(static_cast<int>(t.vocab.tokens.size()), n + 12);
    QCOMPARE(t.vocab.tokens[static_cast<std::size_t>(n - 4)], std::string("<|endoftext|>"));
    QCOMPARE(t.vocab.types[static_cast<std::size_t>(n - 4)], 3);  // special: control
    QCOMPARE(t.vocab.types[static_cast<std::size_t>(n - 1)], 4);  // <extra_word>, not special: user-defined
    QCOMPARE(t.vocab.types[static_cast<std::size_t>(n + 5)], 5);  // padding: unused
    QVERIFY(t.vocab.scores.empty());
    QCOMPARE(t.vocab.merges.size(), test::fixtureMerges().size());
    QCOMPARE(t.vocab.merges[2], std::string("\xC4\xA0t he"));
    QCOMPARE(t.vocab.eos, std::optional<int>(n - 2));  // <|im_end|> from tokenizer_config.json
    QCOMPARE(t.pad, std::optional<int>(n - 4));
    QCOMPARE(t.vocab.addBos, std::optional<bool>(false));
    QCOMPARE(t.chatTemplates.size(), std::size_t(1));
    QVERIFY(t.chatTemplates[0].second.find("<|im_start|>") != std::string::npos);
    const auto entries = ggufTokenizerMetadata(t);
    QCOMPARE(findKey(entries, "tokenizer.ggml.pre")->string, family.toStdString());
    QCOMPARE(findKey(entries, "tokenizer.chat_template")->string, t.chatTemplates[0].second);
    QCOMPARE(findKey(entries, "tokenizer.ggml.padding_token_id")->integer, std::int64_t(n - 4));
    // Read back, it encodes every probe (and special tokens in text) as the tokenizer.json does.
    const auto source = loadTokenizer(file);
    const auto embedded = tokenizerFromEmbedded(t.vocab, "bpe.gguf");
    std::vector<std::string> texts = tokenizerProbeTexts();
    texts.push_back("<|im_start|>user\nHi<|im_end|> <extra_word>");
    for (const auto& text : texts)
        QCOMPARE(embedded->encode(text, false), source->encode(text, false));
}

void TestGgufVocabulary::refusedTokenizers()
{
    const fs::path dir = test::scratchDir("refused");
    // A pre-tokenizer llama.cpp has no name for (whitespace only): every candidate tokenizes differently.
    test::writeBpeTokenizer(dir / "odd", "gpt-2");
    nlohmann::json j = nlohmann::json::parse(test::readTextFile(dir / "odd" / "tokenizer.json"));
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", nlohmann::json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}},
                                                                    {"behavior", "Isolated"}, {"invert", false}},
                                                                   {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                                                    {"trim_offsets", true}, {"use_regex", false}}})}};
    test::writeTextFile(dir / "odd" / "tokenizer.json", j.dump());
    expectError([&] { ggufTokenizerFromFile(dir / "odd" / "tokenizer.json", 400); }, "none that llama.cpp names");

    // A SentencePiece-style tokenizer.json (Metaspace, byte fallback): llama.cpp reads those from tokenizer.model.
    nlohmann::json sp = {{"model", {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", {{"<unk>", 0}, {"a", 1}, {"\xE2\x96\x81", 2}}},
                                     {"merges", nlohmann::json::array()}}},
                         {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}}},
                         {"decoder", {{"type", "Metaspace"}}}};
    fs::create_directories(dir / "sp");
    test::writeTextFile(dir / "sp" / "tokenizer.json", sp.dump());
    expectError([&] { ggufTokenizerFromFile(dir / "sp" / "tokenizer.json", 8); }, "give the model's tokenizer.model");
    // With the tokenizer.model it was made from beside it, that is what gets embedded.
    std::filesystem::copy_file(test::sourceDir() / "data" / "tokenizers" / "tiny_bpe.model", dir / "sp" / "tokenizer.model");
    const GgufTokenizer t = ggufTokenizerFromFile(dir / "sp" / "tokenizer.json", 384);
    QCOMPARE(t.vocab.model, std::string("llama"));
    QVERIFY(t.source.find("tokenizer.model") != std::string::npos);
}

void TestGgufVocabulary::paddedToTheModel()
{
    expectError([&] { ggufTokenizerFromFile(test::demoDir() / "tok512.bin", 500); },
                "more than the model's vocabulary of 500");
    const GgufTokenizer t = ggufTokenizerFromFile(test::demoDir() / "tok512.bin", 520);
    QCOMPARE(t.vocab.tokens.size(), std::size_t(520));
    QCOMPARE(t.vocab.tokens[519], std::string("[PAD519]"));
    QCOMPARE(t.vocab.scores.size(), std::size_t(520));
}

QTEST_GUILESS_MAIN(TestGgufVocabulary)
#include "tst_gguf_vocabulary.moc"
