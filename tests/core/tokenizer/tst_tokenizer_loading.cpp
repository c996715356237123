#include "common/test_support.h"

#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <cstring>

using namespace mla;

namespace {

std::filesystem::path spModel() { return test::sourceDir() / "data" / "tokenizers" / "tiny_bpe.model"; }

// The smallest tokenizer.json loadTokenizer accepts: a BPE model with a vocabulary.
const char* kMinimalJson = R"({
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}, "merges": ["a b"]},
  "added_tokens": [{"id": 3, "content": "<|endoftext|>", "special": true}],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"}
})";

void copyFile(const std::filesystem::path& from, const std::filesystem::path& to)
{
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

void expectError(const std::filesystem::path& path, const std::string& needle)
{
    try {
        loadTokenizer(path);
        QFAIL(("loaded " + path.string()).c_str());
    } catch (const Error& e) {
        const std::string what = e.what();
        QVERIFY2(what.find(path.string()) != std::string::npos, what.c_str());
        QVERIFY2(what.find(needle) != std::string::npos, what.c_str());
    }
}

} // namespace

class TestTokenizerLoading : public QObject {
    Q_OBJECT

private slots:
    void detectsEachFormat()
    {
        auto bin = loadTokenizer(test::demoDir() / "tok512.bin");
        QCOMPARE(bin->kind(), std::string("llama2c"));
        QCOMPARE(bin->vocabSize(), 512);
        auto poem = loadTokenizer(test::modelsDir() / "poem5L" / "poem_tok.bin");
        QCOMPARE(poem->kind(), std::string("llama2c"));
        QCOMPARE(poem->vocabSize(), 2048);
        auto sp = loadTokenizer(spModel());
        QCOMPARE(sp->kind(), std::string("sentencepiece"));
        QCOMPARE(sp->vocabSize(), 384);

        const auto dir = test::scratchDir("detect");
        test::writeTextFile(dir / "tokenizer.json", kMinimalJson);
        auto json = loadTokenizer(dir / "tokenizer.json");
        QCOMPARE(json->kind(), std::string("bpe"));
        QCOMPARE(json->encode("ab<|endoftext|>", false), (std::vector<int>{2, 3}));
        QCOMPARE(json->eosId(), std::optional<int>(3));

        // Content decides, not the name: JSON under another name, a llama2.c file named *.model, a SentencePiece
        // model named *.bin.
        test::writeTextFile(dir / "vocab.txt", kMinimalJson);
        QCOMPARE(loadTokenizer(dir / "vocab.txt")->kind(), std::string("bpe"));
        copyFile(test::demoDir() / "tok512.bin", dir / "tokenizer.model");
        QCOMPARE(loadTokenizer(dir / "tokenizer.model")->kind(), std::string("llama2c"));
        copyFile(spModel(), dir / "sp.bin");
        QCOMPARE(loadTokenizer(dir / "sp.bin")->kind(), std::string("sentencepiece"));
    }

    void llama2cFileStartingWithBrace()
    {
        // max_token_length 123 is the byte '{': not JSON, still a llama2.c tokenizer.
        std::string bytes = test::readTextFile(test::demoDir() / "tok512.bin");
        const std::int32_t max = 123;
        std::memcpy(bytes.data(), &max, 4);
        const auto path = test::scratchDir("brace") / "tok.bin";
        test::writeTextFile(path, bytes);
        QCOMPARE(loadTokenizer(path)->kind(), std::string("llama2c"));
    }

    void badFilesAreErrors()
    {
        const auto dir = test::scratchDir("bad");
        test::writeTextFile(dir / "empty.bin", "");
        expectError(dir / "empty.bin", "empty");
        test::writeTextFile(dir / "garbage.bin", std::string("\x05\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff", 12));
        expectError(dir / "garbage.bin", "negative length");
        test::writeTextFile(dir / "garbage.model", "definitely not a protobuf");
        expectError(dir / "garbage.model", "SentencePiece");
        test::writeTextFile(dir / "tokenizer.json", "{\"model\": ");
        expectError(dir / "tokenizer.json", "invalid JSON");
        test::writeTextFile(dir / "config.json", R"({"vocab_size": 32000})");
        expectError(dir / "config.json", "'model'");
        expectError(dir / "missing.bin", "cannot open");
        expectError(dir, "folder");
    }

    void findsTokenizerNextToCheckpoints()
    {
        QCOMPARE(findTokenizerNextTo(test::demoDir() / "stories260K.bin"),
                 std::optional<std::filesystem::path>(test::demoDir() / "tok512.bin"));
        const auto aidreams = test::modelsDir() / "aidreams260K";
        QCOMPARE(findTokenizerNextTo(aidreams / "aidreams260K.bin"),
                 std::optional<std::filesystem::path>(aidreams / "tok512.bin"));
        // For a folder, inside it; the checkpoint aidreams260K.bin sorts first and is skipped as unparsable.
        QCOMPARE(findTokenizerNextTo(aidreams), std::optional<std::filesystem::path>(aidreams / "tok512.bin"));
        const auto hf = test::modelsDir() / "stories260K-hf";
        QCOMPARE(findTokenizerNextTo(hf / "model.safetensors"),
                 std::optional<std::filesystem::path>(hf / "tokenizer.bin"));
        QCOMPARE(findTokenizerNextTo(test::modelsDir() / "poem5L" / "poem_model.bin"),
                 std::optional<std::filesystem::path>(test::modelsDir() / "poem5L" / "poem_tok.bin"));
        QCOMPARE(findTokenizerNextTo(test::modelsDir() / "xs260K" / "xs260K.bin"), std::nullopt);
    }

    void findPrefersJsonThenModelThenBin()
    {
        const auto dir = test::scratchDir("prefer");
        copyFile(test::demoDir() / "stories260K.bin", dir / "model.bin");
        QCOMPARE(findTokenizerNextTo(dir / "model.bin"), std::nullopt);
        copyFile(test::demoDir() / "tok512.bin", dir / "a_vocab.bin");
        QCOMPARE(findTokenizerNextTo(dir / "model.bin"), std::optional<std::filesystem::path>(dir / "a_vocab.bin"));
        // Never the checkpoint itself, even when it is the only tokenizer-shaped file.
        QCOMPARE(findTokenizerNextTo(dir / "a_vocab.bin"), std::nullopt);
        copyFile(test::demoDir() / "tok512.bin", dir / "tokenizer.bin");
        QCOMPARE(findTokenizerNextTo(dir / "model.bin"), std::optional<std::filesystem::path>(dir / "tokenizer.bin"));
        copyFile(spModel(), dir / "tokenizer.model");
        QCOMPARE(findTokenizerNextTo(dir / "model.bin"),
                 std::optional<std::filesystem::path>(dir / "tokenizer.model"));
        test::writeTextFile(dir / "tokenizer.json", kMinimalJson);
        QCOMPARE(findTokenizerNextTo(dir / "model.bin"), std::optional<std::filesystem::path>(dir / "tokenizer.json"));
        QCOMPARE(findTokenizerNextTo(dir), std::optional<std::filesystem::path>(dir / "tokenizer.json"));
        QCOMPARE(findTokenizerNextTo(dir / "tokenizer.json"),
                 std::optional<std::filesystem::path>(dir / "tokenizer.model"));
        QCOMPARE(findTokenizerNextTo(dir / "no_such_folder" / "model.bin"), std::nullopt);
    }

    void decodeChainsPrevious()
    {
        auto t = loadTokenizer(test::demoDir() / "tok512.bin");
        const std::vector<int> ids = t->encode("Once upon a time", true);
        QCOMPARE(t->decode(std::span<const int>(ids).subspan(1), ids[0]), std::string("Once upon a time"));
        QCOMPARE(t->decode(std::span<const int>(ids).subspan(1)), std::string(" Once upon a time"));
        QCOMPARE(t->decode({}), std::string());
    }
};

QTEST_GUILESS_MAIN(TestTokenizerLoading)
#include "tst_tokenizer_loading.moc"
