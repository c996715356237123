#include "common/test_support.h"

#include "formats/checkpoint_source.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

#include <QElapsedTimer>

#include <cstring>
#include <random>

using namespace mla;

namespace {

std::filesystem::path tok512Path() { return test::demoDir() / "tok512.bin"; }
std::filesystem::path poemPath() { return test::modelsDir() / "poem5L" / "poem_tok.bin"; }

std::vector<std::uint8_t> fileBytes(const std::filesystem::path& p)
{
    const std::string s = test::readTextFile(p);
    return {s.begin(), s.end()};
}

void appendInt32(std::vector<std::uint8_t>& out, std::int32_t v)
{
    std::uint8_t b[4];
    std::memcpy(b, &v, 4);
    out.insert(out.end(), b, b + 4);
}

void appendToken(std::vector<std::uint8_t>& out, float score, const std::string& piece)
{
    std::uint8_t b[4];
    std::memcpy(b, &score, 4);
    out.insert(out.end(), b, b + 4);
    appendInt32(out, static_cast<std::int32_t>(piece.size()));
    out.insert(out.end(), piece.begin(), piece.end());
}

// A five-token tokenizer.bin: <unk>, <s>, </s>, " ", "ab".
std::vector<std::uint8_t> smallFile()
{
    std::vector<std::uint8_t> out;
    appendInt32(out, 6);
    appendToken(out, 0.0f, "<unk>");
    appendToken(out, 0.0f, "\n<s>\n");
    appendToken(out, 0.0f, "\n</s>\n");
    appendToken(out, -1.0f, " ");
    appendToken(out, -2.0f, "ab");
    return out;
}

// run.c encode() in its original O(n^2) form over the public piece()/score() accessors, to check the heap-based
// implementation on many random strings (ties included).
std::vector<int> naiveEncode(const Llama2cTokenizer& t, const std::string& text, bool bos)
{
    std::map<std::string, int> lookup;
    for (int i = 0; i < t.vocabSize(); ++i)
        lookup.emplace(t.piece(i), i);
    auto find = [&](const std::string& s) {
        auto it = lookup.find(s);
        return it == lookup.end() ? -1 : it->second;
    };
    std::vector<int> tokens;
    if (bos)
        tokens.push_back(1);
    if (!text.empty())
        tokens.push_back(find(" "));
    std::string buf;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if ((c & 0xC0) != 0x80)
            buf.clear();
        buf += static_cast<char>(c);
        if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 && buf.size() < 4)
            continue;
        const int id = find(buf);
        if (id >= 0)
            tokens.push_back(id);
        else
            for (char b : buf)
                tokens.push_back(static_cast<unsigned char>(b) + 3);
        buf.clear();
    }
    while (true) {
        float best = -1e10f;
        int bestId = -1;
        int bestIdx = -1;
        for (int i = 0; i + 1 < static_cast<int>(tokens.size()); ++i) {
            const int id = find(t.piece(tokens[i]) + t.piece(tokens[i + 1]));
            if (id != -1 && t.score(id) > best) {
                best = t.score(id);
                bestId = id;
                bestIdx = i;
            }
        }
        if (bestIdx == -1)
            break;
        tokens[bestIdx] = bestId;
        tokens.erase(tokens.begin() + bestIdx + 1);
    }
    return tokens;
}

std::string decodeAfterFirst(const Tokenizer& t, const std::vector<int>& ids)
{
    return t.decode(std::span<const int>(ids).subspan(1), ids.front());
}

} // namespace

class TestLlama2cTokenizer : public QObject {
    Q_OBJECT

private slots:
    void loadsTok512()
    {
        auto t = Llama2cTokenizer::fromFile(tok512Path());
        QCOMPARE(t->kind(), std::string("llama2c"));
        QCOMPARE(t->vocabSize(), 512);
        QCOMPARE(t->bosId(), std::optional<int>(1));
        QCOMPARE(t->eosId(), std::optional<int>(2));
        QCOMPARE(t->maxTokenLength(), 7);
        QCOMPARE(t->piece(0), std::string("<unk>"));
        QCOMPARE(t->piece(3 + 0x41), std::string("<0x41>"));
        QCOMPARE(t->piece(265), std::string(" the"));
        QCOMPARE(t->score(265), -6.0f);
    }

    void encodesLikeRunC_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("text");
        QTest::addColumn<QList<int>>("expected");
        // Expected ids printed by tests/data/tokenizers/llama2c_encode_reference.py, an independent Python
        // transcription of llama2.c run.c encode() (BOS on), run over the same tokenizer files.
        const QString tok = "tok512";
        QTest::newRow("once") << tok << "Once upon a time" << QList<int>{1, 403, 407, 261, 378};
        QTest::newRow("sentence") << tok << "Once upon a time, there was a little girl named Lily."
                                  << QList<int>{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                                317, 426};
        QTest::newRow("hello") << tok << "Hello world" << QList<int>{1, 346, 306, 414, 263, 304, 341};
        QTest::newRow("newline") << tok << "The cat sat on the mat.\nIt was happy!"
                                 << QList<int>{1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 426, 13, 442, 413,
                                               286, 393, 443};
        // Accents, typographic quotes and an emoji: pieces for the known characters, byte tokens for the rest.
        QTest::newRow("unicode") << tok << QString::fromUtf8("café naïve – “quotes” 😀")
                                 << QList<int>{1,   280, 412, 431, 485, 297, 412, 198, 178, 360, 410, 476,
                                               410, 465, 456, 425, 309, 406, 466, 410, 243, 162, 155, 131};
        QTest::newRow("single") << tok << "a" << QList<int>{1, 261};
        QTest::newRow("spaces") << tok << "   spaces   "
                                << QList<int>{1, 410, 410, 410, 262, 427, 412, 331, 419, 410, 410, 410};
        QTest::newRow("digits") << tok << "1234567890"
                                << QList<int>{1, 410, 475, 479, 472, 484, 480, 490, 491, 487, 483, 477};
        QTest::newRow("apostrophes") << tok << "Tom's dog didn't bark."
                                     << QList<int>{1, 274, 287, 439, 419, 400, 428, 279, 292, 416, 439, 413, 268, 295,
                                                   433, 426};
        QTest::newRow("empty") << tok << "" << QList<int>{1};
        const QString poem = "poem";
        QTest::newRow("poem line") << poem << QString::fromUtf8("床前明月光") << QList<int>{1, 13, 854, 142, 57, 34, 125};
        QTest::newRow("poem punctuation") << poem << QString::fromUtf8("春眠不觉晓，处处闻啼鸟。")
                                          << QList<int>{1, 13, 38, 887, 31, 466, 321, 4, 130, 130, 129, 471, 138, 5};
    }

    void encodesLikeRunC()
    {
        QFETCH(QString, file);
        QFETCH(QString, text);
        QFETCH(QList<int>, expected);
        auto t = Llama2cTokenizer::fromFile(file == "poem" ? poemPath() : tok512Path());
        const std::string utf8 = text.toStdString();
        const std::vector<int> ids = t->encode(utf8, true);
        QCOMPARE(QList<int>(ids.begin(), ids.end()), expected);
        QCOMPARE(decodeAfterFirst(*t, ids), utf8);
        // Without BOS the same tokens follow, and the dummy-prefix space is then printed.
        const std::vector<int> plain = t->encode(utf8, false);
        QCOMPARE(QList<int>(plain.begin(), plain.end()), expected.mid(1));
    }

    void matchesNaiveRunCOnRandomText()
    {
        auto t = Llama2cTokenizer::fromFile(tok512Path());
        std::mt19937 rng(1234);
        const std::vector<std::string> alphabet = {"a", "b", "e", "t", "h", " ", "  ", "\n", "the", "ing", "é", "中",
                                                   "😀", "\xff", "\x80", ".", ",", "Lily", "Tom", "o", "n"};
        for (int round = 0; round < 300; ++round) {
            std::string text;
            const int n = static_cast<int>(rng() % 40);
            for (int i = 0; i < n; ++i)
                text += alphabet[rng() % alphabet.size()];
            QCOMPARE(t->encode(text, round % 2 == 0), naiveEncode(*t, text, round % 2 == 0));
        }
    }

    void decodesLikeRunC()
    {
        auto t = Llama2cTokenizer::fromFile(tok512Path());
        QCOMPARE(t->decodePiece(-1, 3 + 0x0A), std::string("\n"));
        QCOMPARE(t->decodePiece(1, 3 + 0xE4), std::string("\xE4"));
        QCOMPARE(t->decodePiece(1, 265), std::string("the"));  // " the" after BOS loses its space
        QCOMPARE(t->decodePiece(5, 265), std::string(" the")); // anywhere else keeps it
        QCOMPARE(t->decodePiece(-1, 1), std::string("\n<s>\n")); // run.c prints a tokenizer.bin's pieces as stored
        QVERIFY(t->isSpecial(1));
        QVERIFY(!t->isSpecial(265));
        QVERIFY_THROWS_EXCEPTION(Error, t->decodePiece(-1, 512));
        QVERIFY_THROWS_EXCEPTION(Error, t->decodePiece(-1, -1));
    }

    void roundTripsText()
    {
        auto t = Llama2cTokenizer::fromFile(tok512Path());
        for (const std::string text :
             {"Lily and Tom went to the park.", "  leading and trailing  ", "tabs\tand\nnewlines\r\n",
              "Ünïcödé ≠ ASCII — 你好，世界 🎉🎉", "\x01\x02 control bytes \x7f"}) {
            QCOMPARE(decodeAfterFirst(*t, t->encode(text, true)), text);
        }
    }

    void poemRoundTripsChinese()
    {
        auto t = Llama2cTokenizer::fromFile(poemPath());
        QCOMPARE(t->vocabSize(), 2048);
        const std::string poem = "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。";
        QCOMPARE(decodeAfterFirst(*t, t->encode(poem, true)), poem);
        // This vocabulary has no byte tokens: an unknown character becomes one <unk> (run.c would emit byte + 3,
        // unrelated characters of this vocabulary).
        const std::vector<int> ids = t->encode("山😀", false);
        QCOMPARE(ids, (std::vector<int>{13, t->encode("山", false)[1], 0}));
    }

    void longTextIsFast()
    {
        auto t = Llama2cTokenizer::fromFile(tok512Path());
        std::string text;
        while (text.size() < 300000)
            text += "Once upon a time, there was a little girl named Lily. She liked to play 42 games! ";
        QElapsedTimer timer;
        timer.start();
        const std::vector<int> ids = t->encode(text, true);
        QVERIFY2(timer.elapsed() < 3000, "encoding 300 kB took more than 3 s");
        QCOMPARE(decodeAfterFirst(*t, ids), text);
    }

    void embeddedLlamaVocabularyMatchesTokenizerBin()
    {
        auto bin = Llama2cTokenizer::fromFile(tok512Path());
        // The vocabulary a GGUF converter writes for tok512 (as stories260K.gguf holds it): spaces spelled U+2581,
        // <s> and </s> as control tokens, byte tokens typed 6.
        EmbeddedVocabulary v;
        v.model = "llama";
        for (int i = 0; i < bin->vocabSize(); ++i) {
            std::string p = i == 1 ? "<s>" : i == 2 ? "</s>" : utf8::replaceAll(bin->piece(i), " ", utf8::kSpaceMarker);
            v.tokens.push_back(p);
            v.scores.push_back(bin->score(i));
            v.types.push_back(i == 0 ? 2 : i <= 2 ? 3 : i <= 258 ? 6 : 1);
        }
        v.bos = 1;
        v.eos = 2;
        v.unk = 0;
        auto gguf = tokenizerFromEmbedded(v, "stories260K.gguf");
        QCOMPARE(gguf->kind(), std::string("llama2c"));
        QCOMPARE(gguf->vocabSize(), 512);
        QCOMPARE(gguf->bosId(), std::optional<int>(1));
        QCOMPARE(gguf->eosId(), std::optional<int>(2));

        std::mt19937 rng(99);
        std::vector<std::string> texts = {"Once upon a time", "Hello world", "", " ", "a  b\n\nc",
                                          "café naïve – “quotes” 😀", "<s> is not BOS", "Tom's 123 dogs."};
        const std::string alphabet = "abcdefghijklmnopqrstuvwxyz ABCLT.,!?'\n0123";
        for (int i = 0; i < 200; ++i) {
            std::string s;
            for (int k = static_cast<int>(rng() % 30); k > 0; --k)
                s += alphabet[rng() % alphabet.size()];
            texts.push_back(s);
        }
        for (const std::string& text : texts) {
            const std::vector<int> ids = bin->encode(text, true);
            QCOMPARE(gguf->encode(text, true), ids);
            QCOMPARE(gguf->encode(text, false), bin->encode(text, false));
            QCOMPARE(decodeAfterFirst(*gguf, ids), decodeAfterFirst(*bin, ids));
            for (std::size_t k = 1; k < ids.size(); ++k)
                QCOMPARE(gguf->decodePiece(ids[k - 1], ids[k]), bin->decodePiece(ids[k - 1], ids[k]));
        }
        // GGUF control tokens print nothing, as in llama.cpp.
        QCOMPARE(gguf->decodePiece(-1, 1), std::string());
        QCOMPARE(gguf->decodePiece(-1, 2), std::string());
        QVERIFY(gguf->isSpecial(2));
    }

    void realGgufVocabularyMatchesTokenizerBin()
    {
        // stories260K.gguf was converted from the same model as tok512.bin; its embedded vocabulary must tokenize
        // exactly like it.
        const CheckpointSource source = openGgufCheckpoint(test::modelsDir() / "stories260K" / "stories260K.gguf");
        QVERIFY(source.vocabulary.has_value());
        auto gguf = tokenizerFromEmbedded(*source.vocabulary, source.file);
        auto bin = Llama2cTokenizer::fromFile(tok512Path());
        QCOMPARE(gguf->kind(), std::string("llama2c"));
        QCOMPARE(gguf->vocabSize(), 512);
        QCOMPARE(gguf->bosId(), std::optional<int>(1));
        QCOMPARE(gguf->eosId(), std::optional<int>(2));
        for (const std::string text : {"Once upon a time, there was a little girl named Lily.", "Hello world",
                                       "café naïve – “quotes” 😀", "  two\n\nlines  ", "Tom's 123 dogs."}) {
            const std::vector<int> ids = bin->encode(text, true);
            QCOMPARE(gguf->encode(text, true), ids);
            QCOMPARE(decodeAfterFirst(*gguf, ids), text);
        }
    }

    void embeddedVocabularyErrors()
    {
        EmbeddedVocabulary v;
        v.model = "llama";
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "x.gguf"));
        v.tokens = {"<unk>", "<s>", "</s>"};
        v.scores = {0.0f};
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "x.gguf"));
        v.scores.clear();
        v.bos = 7;
        QVERIFY_THROWS_EXCEPTION(Error, tokenizerFromEmbedded(v, "x.gguf"));
        v.model = "bert";
        try {
            tokenizerFromEmbedded(v, "x.gguf");
            QFAIL("an unsupported model was accepted");
        } catch (const Error& e) {
            QVERIFY(std::string(e.what()).find("x.gguf") != std::string::npos);
            QVERIFY(std::string(e.what()).find("bert") != std::string::npos);
        }
    }

    void explicitVocabularySize()
    {
        const auto bytes = fileBytes(tok512Path());
        auto t = Llama2cTokenizer::fromBytes(bytes, "tok512.bin", 300);
        QCOMPARE(t->vocabSize(), 300);
        QVERIFY_THROWS_EXCEPTION(Error, Llama2cTokenizer::fromBytes(bytes, "tok512.bin", 513));
        QVERIFY_THROWS_EXCEPTION(Error, Llama2cTokenizer::fromBytes(bytes, "tok512.bin", 0));
    }

    void truncatedAtEveryOffset()
    {
        const auto small = smallFile();
        QCOMPARE(Llama2cTokenizer::fromBytes(small, "small.bin")->vocabSize(), 5);
        for (std::size_t cut = 0; cut < small.size(); ++cut) {
            const std::span<const std::uint8_t> part(small.data(), cut);
            // With the vocabulary size known, every cut is an error.
            QVERIFY_THROWS_EXCEPTION(Error, Llama2cTokenizer::fromBytes(part, "small.bin", 5));
            // Without it, a cut between records is a valid shorter tokenizer if <unk>, <s>, </s> survive.
            try {
                auto t = Llama2cTokenizer::fromBytes(part, "small.bin");
                QVERIFY(t->vocabSize() >= 3 && t->vocabSize() < 5);
            } catch (const Error& e) {
                QVERIFY(std::string(e.what()).starts_with("small.bin: "));
            }
        }
        // The same over a real file, cut everywhere.
        const auto real = fileBytes(tok512Path());
        for (std::size_t cut = 0; cut < real.size(); ++cut)
            QVERIFY_THROWS_EXCEPTION(Error,
                                     Llama2cTokenizer::fromBytes(std::span(real.data(), cut), "tok512.bin", 512));
    }

    void malformedFilesNameTheProblem()
    {
        auto expectError = [](std::vector<std::uint8_t> bytes, const std::string& needle) {
            try {
                Llama2cTokenizer::fromBytes(bytes, "bad_tok.bin");
                QFAIL(("accepted a file that should fail with: " + needle).c_str());
            } catch (const Error& e) {
                const std::string what = e.what();
                QVERIFY2(what.find("bad_tok.bin") != std::string::npos, what.c_str());
                QVERIFY2(what.find(needle) != std::string::npos, what.c_str());
            }
        };
        expectError({}, "empty");
        expectError({1, 0}, "truncated");

        auto negative = smallFile();
        std::int32_t minus = -5;
        std::memcpy(negative.data() + 4 + 4, &minus, 4); // length of token 0
        expectError(negative, "negative length");

        auto huge = smallFile();
        std::int32_t big = 0x7fffffff;
        std::memcpy(huge.data() + 4 + 4, &big, 4);
        expectError(huge, "claims 2147483647 bytes");

        auto tooLong = smallFile();
        std::int32_t two = 2;
        std::memcpy(tooLong.data(), &two, 4);
        expectError(tooLong, "more than max_token_length 2");

        auto zeroMax = smallFile();
        std::int32_t zero = 0;
        std::memcpy(zeroMax.data(), &zero, 4);
        expectError(zeroMax, "max_token_length");

        std::vector<std::uint8_t> twoTokens;
        appendInt32(twoTokens, 8);
        appendToken(twoTokens, 0.0f, "<unk>");
        appendToken(twoTokens, 0.0f, "<s>");
        expectError(twoTokens, "only 2 tokens");

        QVERIFY_THROWS_EXCEPTION(Error, Llama2cTokenizer::fromFile(test::scratchDir("llama2c") / "missing.bin"));
    }

    void garbageNeverCrashes()
    {
        std::mt19937 rng(7);
        int accepted = 0;
        for (int round = 0; round < 2000; ++round) {
            std::vector<std::uint8_t> bytes(rng() % 200);
            for (auto& b : bytes)
                b = static_cast<std::uint8_t>(rng());
            if (round % 3 == 0 && bytes.size() >= 4) {
                const std::int32_t small = static_cast<std::int32_t>(rng() % 16);
                std::memcpy(bytes.data(), &small, 4);
            }
            try {
                auto t = Llama2cTokenizer::fromBytes(bytes, "garbage.bin");
                ++accepted;
                (void)t->decode(t->encode("some text", true));
            } catch (const Error&) {
            }
        }
        QVERIFY(accepted < 2000);
    }
};

QTEST_GUILESS_MAIN(TestLlama2cTokenizer)
#include "tst_llama2c_tokenizer.moc"
