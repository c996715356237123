#include "common/test_support.h"

#include "tokenizer/sentencepiece_tokenizer.h"
#include "util/error.h"

#include <sentencepiece_processor.h>

#include <random>

using namespace mla;

namespace {

// 384-piece BPE model with byte fallback, identity normalization and kept whitespace, made by
// tests/data/tokenizers/make_sentencepiece_fixture.sh from sentencepiece_corpus.txt.
std::filesystem::path modelPath() { return test::sourceDir() / "data" / "tokenizers" / "tiny_bpe.model"; }

const std::vector<std::string>& sampleTexts()
{
    static const std::vector<std::string> texts = {
        "Once upon a time, there was a little girl named Lily.",
        "Hello world",
        "a",
        "   three leading spaces and two trailing  ",
        "tabs\tand\nnew\nlines\r\n",
        "Café, naïve, résumé",
        "你好，世界",                  // not in the corpus: byte fallback
        "emoji 😀🎉 and ZWJ 👩‍💻",
        "Numbers: 2024, 3.14, -42 and 1234567890.",
        "\x01\x7f control bytes",
    };
    return texts;
}

std::string sentencePieceDecodeAfterFirst(const Tokenizer& t, const std::vector<int>& ids)
{
    return t.decode(std::span<const int>(ids).subspan(1), ids.front());
}

} // namespace

class TestSentencePieceTokenizer : public QObject {
    Q_OBJECT

private slots:
    void loadsModel()
    {
        auto t = SentencePieceTokenizer::fromFile(modelPath());
        QCOMPARE(t->kind(), std::string("sentencepiece"));
        QCOMPARE(t->vocabSize(), 384);
        QCOMPARE(t->bosId(), std::optional<int>(1));
        QCOMPARE(t->eosId(), std::optional<int>(2));
        QCOMPARE(t->piece(0), std::string("<unk>"));
        QCOMPARE(t->piece(3 + 0x0A), std::string("<0x0A>"));
        QVERIFY(t->isSpecial(1));
        QVERIFY(t->isSpecial(2));
        QVERIFY(!t->isSpecial(300));
    }

    void encodingsAgreeWithSentencePiece()
    {
        auto t = SentencePieceTokenizer::fromFile(modelPath());
        sentencepiece::SentencePieceProcessor reference;
        QVERIFY(reference.Load(modelPath().string()).ok());
        for (const std::string& text : sampleTexts()) {
            const std::vector<int> expected = reference.EncodeAsIds(text);
            QCOMPARE(t->encode(text, false), expected);
            std::vector<int> withBos = {1};
            withBos.insert(withBos.end(), expected.begin(), expected.end());
            QCOMPARE(t->encode(text, true), withBos);
            // SentencePiece's whole-text decoder drops the dummy prefix; so does ours after BOS.
            QCOMPARE(sentencePieceDecodeAfterFirst(*t, withBos), reference.DecodeIds(expected));
        }
    }

    void roundTrips()
    {
        auto t = SentencePieceTokenizer::fromFile(modelPath());
        for (const std::string& text : sampleTexts())
            QCOMPARE(sentencePieceDecodeAfterFirst(*t, t->encode(text, true)), text);
        QCOMPARE(t->encode("", true), std::vector<int>{1});
    }

    void decodesPiecesLikeLlama2c()
    {
        auto t = SentencePieceTokenizer::fromFile(modelPath());
        const std::vector<int> ids = t->encode("Once upon", false);
        QVERIFY(!ids.empty());
        const std::string first = t->decodePiece(-1, ids[0]);
        QVERIFY2(first.starts_with(" "), first.c_str()); // the dummy prefix, printed when not after BOS
        QCOMPARE(t->decodePiece(1, ids[0]), first.substr(1));
        QCOMPARE(t->decodePiece(-1, 3 + 0xE4), std::string("\xE4")); // byte piece <0xE4>
        QCOMPARE(t->decodePiece(-1, 1), std::string());             // control tokens print nothing
        QCOMPARE(t->decodePiece(-1, 2), std::string());
        QVERIFY_THROWS_EXCEPTION(Error, t->decodePiece(-1, 384));
        // Chinese is not in the model: byte fallback, and the bytes come back as the original text.
        const std::vector<int> chinese = t->encode("你", false);
        QVERIFY(std::find(chinese.begin(), chinese.end(), 3 + 0xE4) != chinese.end());
    }

    void malformedModelsAreErrors()
    {
        const auto dir = test::scratchDir("sentencepiece");
        auto expectError = [&](const std::string& bytes, const std::string& name) {
            const auto path = dir / name;
            test::writeTextFile(path, bytes);
            try {
                SentencePieceTokenizer::fromFile(path);
                QFAIL(("accepted " + name).c_str());
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(name) != std::string::npos, e.what());
            }
        };
        expectError("", "empty.model");
        expectError("this is not a protobuf at all, just some text", "text.model");
        expectError(std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10), "garbage.model");
        QVERIFY_THROWS_EXCEPTION(Error, SentencePieceTokenizer::fromFile(dir / "missing.model"));
    }

    void truncatedModelsNeverCrash()
    {
        const std::string bytes = test::readTextFile(modelPath());
        // A cut between protobuf fields can still be a smaller valid model; every other cut must be an Error.
        int loaded = 0;
        for (std::size_t cut = 0; cut < bytes.size(); cut += 7) {
            try {
                auto t = SentencePieceTokenizer::fromBytes(std::string_view(bytes).substr(0, cut), "cut.model");
                ++loaded;
                (void)t->decode(t->encode("Lily and Tom", true));
            } catch (const Error&) {
            }
        }
        QVERIFY(loaded < static_cast<int>(bytes.size() / 7));
        std::mt19937 rng(3);
        for (int round = 0; round < 300; ++round) {
            std::string corrupt = bytes;
            for (int k = 0; k < 4; ++k)
                corrupt[rng() % corrupt.size()] = static_cast<char>(rng());
            try {
                auto t = SentencePieceTokenizer::fromBytes(corrupt, "corrupt.model");
                (void)t->decode(t->encode("Lily and Tom", true));
            } catch (const Error&) {
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestSentencePieceTokenizer)
#include "tst_sentencepiece_tokenizer.moc"
