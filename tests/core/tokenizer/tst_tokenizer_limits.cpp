// Tokenizers as hostile input: a normalizer or pre-tokenizer that would blow text up is refused with the file named,
// a pre-tokenizer regex with catastrophic backtracking is stopped after bounded work, real patterns still split long
// texts, and an id beyond a padded vocabulary names the tokenizer file.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <chrono>
#include <nlohmann/json.hpp>

using namespace mla;
namespace fs = std::filesystem;

namespace {

fs::path tokenizerWith(const std::string& name, const std::function<void(nlohmann::json&)>& change)
{
    nlohmann::json tok = nlohmann::json::parse(test::readTextFile(test::sourceDir() / "fuzz" / "seeds" / "tokenizer_json" / "llama2"));
    change(tok);
    const fs::path dir = test::scratchDir("tokenizer-limits-" + name);
    test::writeTextFile(dir / "tokenizer.json", tok.dump());
    return dir / "tokenizer.json";
}

std::string encodeError(const Tokenizer& t, const std::string& text)
{
    try {
        t.encode(text, false);
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TestTokenizerLimits : public QObject {
    Q_OBJECT

private slots:
    void normalizerAmplificationIsRefused();
    void metaspaceAmplificationIsRefused();
    void catastrophicBacktrackingIsStopped();
    void realPatternsSplitLongTexts();
    void paddedVocabularyIdNamesTheFile();
};

void TestTokenizerLimits::normalizerAmplificationIsRefused()
{
    const fs::path file = tokenizerWith("normalizer", [](nlohmann::json& t) {
        t["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", std::string(1 << 20, 'x')}};
    });
    const auto tok = loadTokenizer(file);
    // 4000 spaces would become 4 GiB: refused from the count of matches, before anything is built.
    const auto start = std::chrono::steady_clock::now();
    const std::string e = encodeError(*tok, std::string(4000, ' '));
    QVERIFY2(e.find("normalizer") != std::string::npos && e.find(file.string()) != std::string::npos, e.c_str());
    QVERIFY(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    // A text without the character is fine.
    QVERIFY(encodeError(*tok, "abc").empty());
}

void TestTokenizerLimits::metaspaceAmplificationIsRefused()
{
    const fs::path file = tokenizerWith("metaspace", [](nlohmann::json& t) {
        t["normalizer"] = nullptr;
        t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", std::string(1 << 16, 'y')}, {"prepend_scheme", "always"},
                              {"split", true}};
    });
    const auto tok = loadTokenizer(file);
    const std::string e = encodeError(*tok, std::string(2000, ' '));
    QVERIFY2(e.find("pre-tokenizer") != std::string::npos && e.find(file.string()) != std::string::npos, e.c_str());
}

void TestTokenizerLimits::catastrophicBacktrackingIsStopped()
{
    const fs::path file = tokenizerWith("redos", [](nlohmann::json& t) {
        t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"behavior", "Isolated"}, {"invert", false}};
    });
    const auto tok = loadTokenizer(file);
    const auto start = std::chrono::steady_clock::now();
    const std::string e = encodeError(*tok, std::string(3000, 'a') + "!");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    QVERIFY2(e.find("catastrophic backtracking") != std::string::npos && e.find(file.string()) != std::string::npos, e.c_str());
    QVERIFY2(seconds < 10.0, qPrintable(QString::number(seconds)));
    qInfo("stopped after %.2f s", seconds);
}

void TestTokenizerLimits::realPatternsSplitLongTexts()
{
    // The Llama 3 and GPT-2 patterns on a long text with long runs of letters, digits and spaces stay within budget.
    std::string text;
    for (int i = 0; i < 2000; ++i)
        text += "Once upon a time, 12345 there was    a little girl named Lily.\n";
    text += std::string(100000, ' ') + std::string(100000, 'a') + std::string(50000, '7');
    for (const auto pattern : {kLlama3Pattern, kGpt2Pattern, kQwen2Pattern}) {
        const SplitRegex regex(pattern, false, "t.json");
        std::size_t covered = 0;
        for (const auto& s : regex.spans(text))
            covered += s.end - s.begin;
        QCOMPARE(covered, text.size());
    }
}

void TestTokenizerLimits::paddedVocabularyIdNamesTheFile()
{
    const fs::path tokPath = test::realModelPath("stories260K").parent_path() / "tok512.bin";
    const auto tok = loadTokenizer(tokPath);
    try {
        tok->decodePiece(1, 530); // a padded model's id 530 > 512 tokens
        QFAIL("decoding an id beyond the vocabulary succeeded");
    } catch (const Error& e) {
        const std::string what = e.what();
        QVERIFY2(what.find(tokPath.string()) != std::string::npos && what.find("padded") != std::string::npos, e.what());
    }
}

QTEST_GUILESS_MAIN(TestTokenizerLimits)
#include "tst_tokenizer_limits.moc"
