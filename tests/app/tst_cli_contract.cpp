// The command-line contract, through the built mla-workbench-cli: info / generate / eval JSON keys and types, ids
// without BOS or prompt, the published text from all three forms of stories260K, exit codes (0 success, 1 bad input
// with one message on stderr naming the file, 2 usage), --help on every command, synth then info, and every class of
// malformed checkpoint exiting 1 with the file named.
#include "backend/compute_backend.h"
#include "common/test_support.h"

#include "engine/evaluation.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "formats/synthetic_checkpoint.h"
#include "model/model_loader.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace mla;
namespace fs = std::filesystem;

namespace {

// ../shared/models/README.md, "Published reference output": greedy stories260K from BOS, 200 steps.
const char* const kPublishedText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she";

std::string bin() { return (test::demoDir() / "stories260K.bin").string(); }
std::string hf() { return (test::modelsDir() / "stories260K-hf").string(); }
std::string gguf() { return (test::modelsDir() / "stories260K" / "stories260K.gguf").string(); }
std::string tok512() { return (test::demoDir() / "tok512.bin").string(); }

std::string describe(const test::ProcessResult& r)
{
    return "exit " + std::to_string(r.exitCode) + (r.crashed ? " (crashed)" : "") + (r.timedOut ? " (timed out)" : "")
           + "\nstdout: " + r.out.substr(0, 2000) + "\nstderr: " + r.err.substr(0, 2000);
}

#define CLI_EXPECT(result, code)                                                                                        \
    do {                                                                                                                \
        const auto& r_ = (result);                                                                                      \
        QVERIFY2(!r_.crashed && !r_.timedOut && r_.exitCode == (code), describe(r_).c_str());                          \
    } while (false)

nlohmann::json runJson(const std::vector<std::string>& args)
{
    const auto r = test::runCli(args);
    if (r.exitCode != 0 || r.crashed)
        throw std::runtime_error(describe(r));
    return nlohmann::json::parse(r.out);
}

std::vector<std::string> lines(const std::string& s)
{
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty())
            out.push_back(line);
    return out;
}

// Exit 1, exactly one line on stderr, naming `file` and containing `problem`.
void expectBadInput(const std::vector<std::string>& args, const std::string& file, const std::string& problem)
{
    const auto r = test::runCli(args);
    QVERIFY2(!r.crashed && !r.timedOut && r.exitCode == 1, describe(r).c_str());
    const auto errLines = lines(r.err);
    QVERIFY2(errLines.size() == 1, describe(r).c_str());
    QVERIFY2(errLines[0].rfind("mla-workbench-cli: error: ", 0) == 0, describe(r).c_str());
    QVERIFY2(errLines[0].find(file) != std::string::npos, (describe(r) + "\nexpected file: " + file).c_str());
    QVERIFY2(errLines[0].find(problem) != std::string::npos, (describe(r) + "\nexpected problem: " + problem).c_str());
    QVERIFY2(r.out.empty(), describe(r).c_str());
}

using mla::test::writeBytes;

using mla::test::fileBytes;

std::vector<std::uint8_t> safetensorsBytes(const std::string& header, std::size_t dataBytes)
{
    std::vector<std::uint8_t> out(8 + header.size() + dataBytes, 0);
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, header.data(), header.size());
    return out;
}

// A copy of the stories260K-hf folder to corrupt.
fs::path copyHf(const fs::path& to)
{
    fs::remove_all(to);
    fs::create_directories(to);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.bin"})
        fs::copy_file(fs::path(hf()) / f, to / f);
    return to;
}

// Offset of the u32 type field of a tensor's record in a GGUF header.
std::size_t ggufTypeOffset(const std::vector<std::uint8_t>& bytes, const std::string& name)
{
    const std::string hay(bytes.begin(), bytes.begin() + 20000);
    std::size_t at = hay.find(name);
    while (at != std::string::npos) {
        std::uint64_t length = 0;
        std::memcpy(&length, bytes.data() + at - 8, 8);
        if (length == name.size())
            break;
        at = hay.find(name, at + 1);
    }
    std::size_t o = at + name.size();
    std::uint32_t dims = 0;
    std::memcpy(&dims, bytes.data() + o, 4);
    return o + 4 + 8 * dims;
}

} // namespace

class TestCliContract : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void helpOnEveryCommand();
    void usageErrorsExit2();
    void missingFilesExit1();
    void infoJson_data();
    void infoJson();
    void generateJson();
    void publishedTextFromEveryForm_data();
    void publishedTextFromEveryForm();
    void generateOptions();
    void evalIds();
    void evalText();
    void synthThenInfo();
    void architecturesThroughCli();
    void malformedCheckpointsExit1();
};

void TestCliContract::initTestCase()
{
    // The CLI runs inherit this: OpenMP threads that sleep rather than spin at barriers, so that a machine busy with
    // other tests does not slow every tiny forward pass down by an order of magnitude. Results do not depend on it.
    if (qEnvironmentVariableIsEmpty("OMP_WAIT_POLICY"))
        qputenv("OMP_WAIT_POLICY", "passive");
}

void TestCliContract::helpOnEveryCommand()
{
    const auto overview = test::runCli({"--help"});
    CLI_EXPECT(overview, 0);
    QVERIFY(overview.out.find("Usage: mla-workbench-cli COMMAND") != std::string::npos);
    // Every command the overview lists, plus the four of the contract.
    std::vector<std::string> commands;
    bool inList = false;
    for (const auto& line : lines(overview.out)) {
        if (line == "Commands:") {
            inList = true;
            continue;
        }
        if (inList && line.rfind("  ", 0) == 0)
            commands.push_back(line.substr(2, line.find(' ', 2) - 2));
        else if (inList)
            break;
    }
    for (const char* required : {"info", "generate", "eval", "synth"})
        QVERIFY2(std::find(commands.begin(), commands.end(), required) != commands.end(), required);
    for (const auto& c : commands) {
        for (const char* flag : {"--help", "-h"}) {
            const auto r = test::runCli({c, flag});
            CLI_EXPECT(r, 0);
            QVERIFY2(r.out.rfind("Usage: mla-workbench-cli " + c, 0) == 0, describe(r).c_str());
            QVERIFY2(r.out.find("--help") != std::string::npos, describe(r).c_str());
        }
        // --help wins over other (even wrong) arguments.
        CLI_EXPECT(test::runCli({c, "a", "b", "c", "--help"}), 0);
    }
    const auto generateHelp = test::runCli({"generate", "--help"}).out;
    for (const char* option : {"--tokenizer", "--prompt", "--steps", "--temperature", "--top-p", "--seed", "--json"})
        QVERIFY2(generateHelp.find(option) != std::string::npos, option);
    const auto evalHelp = test::runCli({"eval", "--help"}).out;
    for (const char* option : {"--tokenizer", "--ids", "--text", "--json"})
        QVERIFY2(evalHelp.find(option) != std::string::npos, option);
    CLI_EXPECT(test::runCli({"help"}), 0);
    const auto version = test::runCli({"--version"});
    CLI_EXPECT(version, 0);
    QVERIFY(version.out.rfind("mla-workbench-cli ", 0) == 0);
}

void TestCliContract::usageErrorsExit2()
{
    const std::vector<std::vector<std::string>> cases = {
        {},
        {"frobnicate"},
        {"info", bin(), "--bogus"},
        {"info", bin(), "-x"},
        {"info", bin(), "extra-positional"},
        {"info", bin(), "--json=yes"},
        {"generate", bin(), "--steps"},
        {"generate", bin(), "--steps", "abc"},
        {"generate", bin(), "--steps", "0"},
        {"generate", bin(), "--steps", "12x"},
        {"generate", bin(), "--temperature", "-1"},
        {"generate", bin(), "--temperature", "nan"},
        {"generate", bin(), "--top-p", "1.5"},
        {"generate", bin(), "--seed", "-3"},
        {"generate", bin(), "--unknown-option", "1"},
        {"eval", bin()},
        {"eval", bin(), "--ids", "a", "--text", "b"},
        {"eval", bin(), "--ids"},
        {"synth", "--shape", "smollm-135m"},
        {"synth", "--out", "/tmp/x"},
        {"synth", "--shape", "smollm-135m", "--out", "/tmp/x", "--dtype", "int4"},
        {"synth", "--shape", "smollm-135m", "--out", "/tmp/x", "--layers", "0"},
    };
    for (const auto& args : cases) {
        const auto r = test::runCli(args);
        std::string joined;
        for (const auto& a : args)
            joined += a + " ";
        QVERIFY2(!r.crashed && r.exitCode == 2, (joined + "\n" + describe(r)).c_str());
        QVERIFY2(!r.err.empty(), joined.c_str());
        QVERIFY2(r.out.empty(), joined.c_str());
        if (!args.empty() && args[0] != "frobnicate")
            QVERIFY2(r.err.find("Usage: mla-workbench-cli") != std::string::npos, (joined + "\n" + r.err).c_str());
    }
    // The unknown option is named.
    QVERIFY(test::runCli({"info", bin(), "--bogus"}).err.find("unknown option --bogus") != std::string::npos);
}

void TestCliContract::missingFilesExit1()
{
    const fs::path dir = test::scratchDir("missing");
    const std::string absent = (dir / "absent-model.bin").string();
    expectBadInput({"info", absent}, absent, "no such file or folder");
    expectBadInput({"info", absent, "--json"}, absent, "no such file or folder");
    expectBadInput({"generate", absent}, absent, "no such file or folder");
    expectBadInput({"eval", absent, "--ids", absent}, absent, "no such file or folder");
    const std::string absentTok = (dir / "absent-tok.bin").string();
    expectBadInput({"info", bin(), "--tokenizer", absentTok}, absentTok, "cannot open");
    const std::string absentIds = (dir / "absent-ids.txt").string();
    expectBadInput({"eval", bin(), "--ids", absentIds}, absentIds, "cannot open");
    expectBadInput({"eval", bin(), "--text", absentIds}, absentIds, "cannot open");
    fs::create_directories(dir / "emptyfolder");
    expectBadInput({"info", (dir / "emptyfolder").string()}, (dir / "emptyfolder").string(), "no config.json");
    // A tokenizer with more tokens than the model's vocabulary.
    const std::string poemTok = (test::modelsDir() / "poem5L" / "poem_tok.bin").string();
    expectBadInput({"generate", bin(), "--tokenizer", poemTok}, poemTok, "more than the model's vocabulary of 512");
    // A prompt without any tokenizer.
    fs::copy_file(test::modelsDir() / "xs260K" / "xs260K.bin", dir / "xs260K.bin");
    const auto r = test::runCli({"generate", (dir / "xs260K.bin").string(), "--prompt", "Once"});
    CLI_EXPECT(r, 1);
    QVERIFY2(r.err.find("needs a tokenizer") != std::string::npos, r.err.c_str());
}

void TestCliContract::infoJson_data()
{
    QTest::addColumn<QString>("model");
    QTest::addColumn<QList<qint64>>("shape"); // layers, hidden, heads, kv_heads, head_dim, vocab, params, kv_elements
    QTest::addColumn<QString>("attention");
    QTest::addColumn<QString>("format");
    // params: embedding + per layer (2 norms + q, k, v, o + 3 FFN) + final norm.
    auto params = [](qint64 d, qint64 ffn, qint64 L, qint64 kvDim, qint64 vocab) {
        return vocab * d + L * (2 * d + 2 * d * d + 2 * kvDim * d + 3 * ffn * d) + d;
    };
    const QList<qint64> stories = {5, 64, 8, 4, 8, 512, params(64, 172, 5, 32, 512), 2 * 4 * 8 * 5};
    QTest::newRow("stories260K.bin") << QString::fromStdString(bin()) << stories << "gqa" << "llama2c";
    QTest::newRow("stories260K-hf") << QString::fromStdString(hf()) << stories << "gqa" << "safetensors";
    // The GGUF stores the tied head a second time as output.weight, so it counts as an untied model.
    QList<qint64> gg = stories;
    gg[6] += 512 * 64;
    QTest::newRow("stories260K.gguf") << QString::fromStdString(gguf()) << gg << "gqa" << "gguf";
    const QList<qint64> aid = {4, 64, 4, 4, 16, 512, params(64, 172, 4, 64, 512), 2 * 4 * 16 * 4};
    QTest::newRow("aidreams260K.bin") << QString::fromStdString((test::modelsDir() / "aidreams260K" / "aidreams260K.bin").string()) << aid << "mha" << "llama2c";
    QTest::newRow("aidreams260K-hf") << QString::fromStdString((test::modelsDir() / "aidreams260K-hf").string()) << aid << "mha" << "safetensors";
    QTest::newRow("poem5L") << QString::fromStdString((test::modelsDir() / "poem5L" / "poem_model.bin").string())
                            << QList<qint64>{5, 96, 6, 6, 16, 2048, params(96, 256, 5, 96, 2048), 2 * 6 * 16 * 5} << "mha" << "llama2c";
    QTest::newRow("xs260K") << QString::fromStdString((test::modelsDir() / "xs260K" / "xs260K.bin").string())
                            << QList<qint64>{5, 64, 8, 4, 8, 512, params(64, 192, 5, 32, 512), 2 * 4 * 8 * 5} << "gqa" << "llama2c";
}

void TestCliContract::infoJson()
{
    QFETCH(QString, model);
    QFETCH(QList<qint64>, shape);
    QFETCH(QString, attention);
    QFETCH(QString, format);
    const nlohmann::json j = runJson({"info", model.toStdString(), "--json"});
    const char* intKeys[] = {"layers", "hidden", "heads", "kv_heads", "head_dim", "vocab", "params", "kv_elements_per_token"};
    for (int i = 0; i < 8; ++i) {
        QVERIFY2(j.contains(intKeys[i]) && j[intKeys[i]].is_number_integer(), intKeys[i]);
        QCOMPARE(j[intKeys[i]].get<qint64>(), shape[i]);
    }
    QVERIFY(j["architecture"].is_string());
    QCOMPARE(j["architecture"].get<std::string>(), std::string("llama"));
    QCOMPARE(QString::fromStdString(j["attention"].get<std::string>()), attention);
    QCOMPARE(QString::fromStdString(j["format"].get<std::string>()), format);
    QVERIFY(j["tokenizer"].is_string() || j["tokenizer"].is_null());

    // Plain text output also works and says the attention kind.
    const auto text = test::runCli({"info", model.toStdString()});
    CLI_EXPECT(text, 0);
    QVERIFY(text.out.find("attention       " + attention.toStdString()) != std::string::npos);
    // --tokenizer is accepted.
    if (format != "gguf" && shape[5] == 512)
        CLI_EXPECT(test::runCli({"info", model.toStdString(), "--tokenizer", tok512(), "--json"}), 0);
}

void TestCliContract::generateJson()
{
    const nlohmann::json j = runJson({"generate", bin(), "--steps", "12", "--json"});
    QVERIFY(j.contains("ids") && j["ids"].is_array());
    QVERIFY(j.contains("text") && j["text"].is_string());
    QVERIFY(j.contains("tokens_per_second") && j["tokens_per_second"].is_number());
    QVERIFY(j["tokens_per_second"].get<double>() > 0);
    QCOMPARE(j["ids"].size(), std::size_t(12));
    for (const auto& id : j["ids"])
        QVERIFY(id.is_number_integer() && id.get<int>() >= 0 && id.get<int>() < 512);
    // Generated ids only: greedy from BOS starts "Once" (403), not BOS (1).
    QCOMPARE(j["ids"][0].get<int>(), 403);
    QCOMPARE(j["text"].get<std::string>(), std::string(kPublishedText).substr(0, j["text"].get<std::string>().size()));

    // With a prompt: the ids exclude BOS and the prompt, and continue the BOS run.
    const nlohmann::json bosRun = runJson({"generate", bin(), "--steps", "30", "--json"});
    const nlohmann::json p = runJson({"generate", bin(), "--prompt", "Once upon a time", "--steps", "30", "--json"});
    const std::vector<int> all = bosRun["ids"].get<std::vector<int>>();
    const std::vector<int> continued = p["ids"].get<std::vector<int>>();
    QVERIFY(!continued.empty());
    QVERIFY(continued.size() < all.size());
    QCOMPARE(continued, std::vector<int>(all.end() - static_cast<std::ptrdiff_t>(continued.size()), all.end()));
    QCOMPARE("Once upon a time" + p["text"].get<std::string>(), bosRun["text"].get<std::string>());
}

void TestCliContract::publishedTextFromEveryForm_data()
{
    QTest::addColumn<QString>("model");
    QTest::newRow("bin") << QString::fromStdString(bin());
    QTest::newRow("hf") << QString::fromStdString(hf());
    QTest::newRow("gguf") << QString::fromStdString(gguf());
}

void TestCliContract::publishedTextFromEveryForm()
{
    QFETCH(QString, model);
    const auto r = test::runCli({"generate", model.toStdString(), "--steps", "200", "--temperature", "0"});
    CLI_EXPECT(r, 0);
    QCOMPARE(r.out, std::string(kPublishedText) + "\n");
    const nlohmann::json j = runJson({"generate", model.toStdString(), "--steps", "200", "--temperature", "0", "--json"});
    QCOMPARE(j["text"].get<std::string>(), std::string(kPublishedText));
    QCOMPARE(j["ids"].size(), std::size_t(200));
}

void TestCliContract::generateOptions()
{
    // Seeded sampling is reproducible; another seed differs; the default steps are 256 (capped at the context).
    const auto a = runJson({"generate", hf(), "--temperature", "1", "--top-p", "0.9", "--seed", "7", "--steps", "80", "--json"});
    const auto b = runJson({"generate", hf(), "--temperature=1", "--top-p=0.9", "--seed=7", "--steps=80", "--json"});
    const auto c = runJson({"generate", hf(), "--temperature", "1", "--top-p", "0.9", "--seed", "8", "--steps", "80", "--json"});
    QVERIFY(a["ids"] == b["ids"]);
    QVERIFY(a["ids"] != c["ids"]);
    const auto longRun = runJson({"generate", (test::modelsDir() / "aidreams260K" / "aidreams260K.bin").string(), "--steps", "100000", "--json"});
    QVERIFY(longRun["ids"].size() <= 128);
    // The demo model is the default MODEL.
    const auto demo = runJson({"generate", "--steps", "5", "--json"});
    QCOMPARE(demo["ids"].size(), std::size_t(5));
    // A model without a tokenizer next to it prints ids; with --tokenizer, text.
    const fs::path dir = test::scratchDir("notok");
    fs::copy_file(test::modelsDir() / "xs260K" / "xs260K.bin", dir / "xs260K.bin");
    const auto ids = test::runCli({"generate", (dir / "xs260K.bin").string(), "--steps", "6"});
    CLI_EXPECT(ids, 0);
    QCOMPARE(lines(ids.out).size(), std::size_t(1));
    const auto xs = runJson({"generate", (dir / "xs260K.bin").string(), "--tokenizer", tok512(), "--steps", "30", "--json"});
    QVERIFY(xs["text"].get<std::string>().size() > 20);
    QCOMPARE(runJson({"generate", (dir / "xs260K.bin").string(), "--steps", "6", "--json"})["text"].get<std::string>(), std::string());
}

void TestCliContract::evalIds()
{
    const fs::path dir = test::scratchDir("evalids");
    const fs::path ids = dir / "ids.txt";
    test::writeTextFile(ids, "1 403 407 261 378 434 342 414 260 428\n\n1 20 30 40 50\n7 8\n");
    const nlohmann::json j = runJson({"eval", bin(), "--ids", ids.string(), "--json"});
    QVERIFY(j.contains("ppl") && j["ppl"].is_number());
    QVERIFY(j.contains("tokens") && j["tokens"].is_number_integer());
    // Used exactly as given: 9 + 4 + 1 predictions, no BOS added.
    QCOMPARE(j["tokens"].get<int>(), 14);
    const Model m = loadModel(bin());
    const double expected = perplexity(cpuBackend(), Transformer(m), readIdSequences(ids)).ppl();
    QVERIFY2(std::fabs(j["ppl"].get<double>() - expected) < 1e-9 * expected, qPrintable(QString::number(j["ppl"].get<double>())));
    // The three forms agree.
    QCOMPARE(runJson({"eval", hf(), "--ids", ids.string(), "--json"})["ppl"].get<double>(), j["ppl"].get<double>());
    QCOMPARE(runJson({"eval", gguf(), "--ids", ids.string(), "--json"})["ppl"].get<double>(), j["ppl"].get<double>());
    // Text output.
    const auto text = test::runCli({"eval", bin(), "--ids", ids.string()});
    CLI_EXPECT(text, 0);
    QVERIFY(text.out.find("perplexity") != std::string::npos);

    // Bad id files: exit 1 naming file and line.
    test::writeTextFile(dir / "bad.txt", "1 2 3\n4 five 6\n");
    expectBadInput({"eval", bin(), "--ids", (dir / "bad.txt").string()}, (dir / "bad.txt").string(), "line 2: 'five' is not a token id");
    test::writeTextFile(dir / "empty.txt", "\n\n");
    expectBadInput({"eval", bin(), "--ids", (dir / "empty.txt").string()}, (dir / "empty.txt").string(), "holds no token ids");
    // An id outside the vocabulary, and sequences too short to score: exit 1 naming the file.
    test::writeTextFile(dir / "oov.txt", "1 2 3\n1 600\n");
    expectBadInput({"eval", bin(), "--ids", (dir / "oov.txt").string()}, (dir / "oov.txt").string(),
                   "sequence 2 holds id 600, outside the model's vocabulary of 512 ids");
    test::writeTextFile(dir / "short.txt", "1\n2\n");
    expectBadInput({"eval", bin(), "--ids", (dir / "short.txt").string()}, (dir / "short.txt").string(),
                   "no sequence has two or more ids");
}

void TestCliContract::evalText()
{
    const fs::path dir = test::scratchDir("evaltext");
    test::writeTextFile(dir / "story.txt", std::string(kPublishedText) + "\n");
    const nlohmann::json j = runJson({"eval", bin(), "--text", (dir / "story.txt").string(), "--json"});
    QVERIFY(j["tokens"].get<int>() >= 199);
    // The model's own greedy text is very predictable to it.
    QVERIFY2(j["ppl"].get<double>() > 1.0 && j["ppl"].get<double>() < 2.0, qPrintable(QString::number(j["ppl"].get<double>())));
    const nlohmann::json withReference = runJson({"eval", bin(), "--text", (dir / "story.txt").string(), "--reference", hf(), "--json"});
    QCOMPARE(withReference["kl"].get<double>(), 0.0);
    QCOMPARE(withReference["top1_agreement"].get<double>(), 1.0);
}

void TestCliContract::synthThenInfo()
{
    const fs::path dir = test::scratchDir("synth");
    const fs::path out = dir / "smollm";
    const auto r = test::runCli({"synth", "--shape", "smollm-135m", "--layers", "2", "--dtype", "bf16", "--out", out.string()});
    CLI_EXPECT(r, 0);
    QVERIFY(fs::exists(out / "config.json"));
    QVERIFY(fs::exists(out / "model.safetensors"));
    const nlohmann::json j = runJson({"info", out.string(), "--json"});
    QCOMPARE(j["architecture"].get<std::string>(), std::string("llama"));
    QCOMPARE(j["layers"].get<int>(), 2);
    QCOMPARE(j["hidden"].get<int>(), 576);
    QCOMPARE(j["heads"].get<int>(), 9);
    QCOMPARE(j["kv_heads"].get<int>(), 3);
    QCOMPARE(j["head_dim"].get<int>(), 64);
    QCOMPARE(j["vocab"].get<int>(), 49152);
    QCOMPARE(j["attention"].get<std::string>(), std::string("gqa"));
    QCOMPARE(j["kv_elements_per_token"].get<int>(), 2 * 3 * 64 * 2);
    QCOMPARE(j["weight_dtype"].get<std::string>(), std::string("BF16"));
    const std::int64_t params = 49152LL * 576 + 2 * (2 * 576 + 576 * 576 * 2 + 2 * 192 * 576 + 3 * 1536 * 576) + 576;
    QCOMPARE(j["params"].get<std::int64_t>(), params);
    // It runs (no tokenizer: ids only).
    const auto g = runJson({"generate", out.string(), "--steps", "3", "--json"});
    QCOMPARE(g["ids"].size(), std::size_t(3));
    // Sharded output (the 56 MiB embedding gets a shard of its own), and the JSON summary.
    const auto sharded = runJson({"synth", "--shape", "smollm-135m", "--layers", "1", "--dtype", "f16", "--shard-mb", "16",
                                  "--seed", "5", "--out", (dir / "sharded").string(), "--json"});
    QCOMPARE(sharded["layers"].get<int>(), 1);
    QCOMPARE(sharded["shape"].get<std::string>(), std::string("smollm-135m"));
    QVERIFY(fs::exists(dir / "sharded" / "model.safetensors.index.json"));
    QVERIFY(fs::exists(dir / "sharded" / "model-00001-of-00002.safetensors"));
    const nlohmann::json q = runJson({"info", (dir / "sharded").string(), "--json"});
    QCOMPARE(q["layers"].get<int>(), 1);
    QCOMPARE(q["weight_dtype"].get<std::string>(), std::string("F16"));
    QCOMPARE(q["kv_elements_per_token"].get<int>(), 2 * 3 * 64);
    // An unknown shape is bad input naming the known ones.
    const auto bad = test::runCli({"synth", "--shape", "gpt-5", "--out", (dir / "x").string()});
    CLI_EXPECT(bad, 1);
    QVERIFY(bad.err.find("smollm-135m") != std::string::npos);
    QVERIFY(!fs::exists(dir / "x"));
}

void TestCliContract::architecturesThroughCli()
{
    // Tiny random checkpoints of each architecture: info reports what config.json says, generate runs.
    const fs::path dir = test::scratchDir("archs");
    for (const char* arch : {"llama", "mistral", "qwen2", "qwen3"}) {
        ModelConfig c;
        c.architecture = arch;
        c.hidden = 32;
        c.ffn = 48;
        c.layers = 2;
        c.heads = 4;
        c.kvHeads = std::string(arch) == "mistral" ? 4 : 2;
        c.headDim = std::string(arch) == "qwen3" ? 16 : 8;
        c.vocab = 64;
        c.maxPositions = 64;
        c.bosId = 1;
        c.eosIds = {2};
        c.qkvBias = std::string(arch) == "qwen2";
        c.qkNorm = std::string(arch) == "qwen3";
        c.slidingWindow = std::string(arch) == "mistral" ? 16 : 0;
        writeSyntheticCheckpoint({"tiny", "tiny", c}, SyntheticOptions{0, DType::F32, 1, 0, {}}, dir / arch);
        const nlohmann::json j = runJson({"info", (dir / arch).string(), "--json"});
        QCOMPARE(j["architecture"].get<std::string>(), std::string(arch));
        QCOMPARE(j["attention"].get<std::string>(), std::string(c.kvHeads == c.heads ? "mha" : "gqa"));
        QCOMPARE(j["head_dim"].get<int>(), static_cast<int>(c.headDim));
        QCOMPARE(j["kv_elements_per_token"].get<std::int64_t>(), 2 * c.kvHeads * c.headDim * c.layers);
        QCOMPARE(j["qkv_bias"].get<bool>(), c.qkvBias);
        // Qwen3 loads and runs, but conversion is not supported yet, and info says why.
        QCOMPARE(j["conversion_supported"].get<bool>(), std::string(arch) != "qwen3");
        if (std::string(arch) == "qwen3")
            QVERIFY(j["conversion_unsupported_reason"].get<std::string>().find("q_norm") != std::string::npos);
        const nlohmann::json g = runJson({"generate", (dir / arch).string(), "--steps", "20", "--json"});
        // Random weights may well emit BOS or EOS at once; otherwise 20 tokens.
        const std::string stop = g["stop_reason"].get<std::string>();
        QVERIFY2(stop == "bos" || stop == "eos" || (stop == "steps" && g["ids"].size() == 20), stop.c_str());
        const auto text = test::runCli({"info", (dir / arch).string()});
        CLI_EXPECT(text, 0);
        if (std::string(arch) == "qwen3")
            QVERIFY(text.out.find("not supported yet") != std::string::npos);
    }
}

void TestCliContract::malformedCheckpointsExit1()
{
    const fs::path dir = test::scratchDir("malformed");

    // llama2.c: truncated, one byte too many, a header that does not divide.
    const auto binBytes = fileBytes(bin());
    {
        const fs::path f = dir / "truncated.bin";
        writeBytes(f, std::vector<std::uint8_t>(binBytes.begin(), binBytes.begin() + 50000));
        expectBadInput({"info", f.string()}, f.string(), "does not match its llama2.c header");
        expectBadInput({"generate", f.string()}, f.string(), "does not match its llama2.c header");
        auto longer = binBytes;
        longer.push_back(0);
        writeBytes(f, longer);
        expectBadInput({"info", f.string()}, f.string(), "does not match");
        auto heads = binBytes;
        const std::int32_t seven = 7;
        std::memcpy(heads.data() + 12, &seven, 4);
        writeBytes(f, heads);
        expectBadInput({"info", f.string()}, f.string(), "7 heads do not divide dim 64");
        writeBytes(f, {1, 2});
        expectBadInput({"info", f.string()}, f.string(), "too short");
    }

    // GGUF: a tensor type we do not read (Q4_0 and the k-quants are read: tst_ggml_quants), a lying tensor count, a
    // truncated file.
    const auto ggufBytes = fileBytes(gguf());
    {
        const fs::path f = dir / "bad.gguf";
        auto q = ggufBytes;
        const std::uint32_t iq2xxs = 16;
        std::memcpy(q.data() + ggufTypeOffset(q, "blk.0.attn_q.weight"), &iq2xxs, 4);
        writeBytes(f, q);
        expectBadInput({"info", f.string()}, f.string(), "unsupported tensor type IQ2_XXS in tensor 'blk.0.attn_q.weight'");
        expectBadInput({"eval", f.string(), "--ids", f.string()}, f.string(), "unsupported tensor type IQ2_XXS");
        auto lying = ggufBytes;
        const std::uint64_t huge = 1ull << 62;
        std::memcpy(lying.data() + 8, &huge, 8);
        writeBytes(f, lying);
        expectBadInput({"info", f.string()}, f.string(), "more than the file can hold");
        writeBytes(f, std::vector<std::uint8_t>(ggufBytes.begin(), ggufBytes.begin() + 600000));
        expectBadInput({"generate", f.string()}, f.string(), "runs past the end of the file");
        // Embedding and output of 511 rows under a vocabulary of 512 tokens: the model loads (vocab 511), the
        // embedded tokenizer does not fit it.
        auto rows = ggufBytes;
        const std::uint64_t rows511 = 511;
        for (const char* name : {"token_embd.weight", "output.weight"})
            std::memcpy(rows.data() + ggufTypeOffset(rows, name) - 8, &rows511, 8);
        writeBytes(f, rows);
        expectBadInput({"generate", f.string()}, f.string(), "tokenizer has 512 tokens, more than the model's vocabulary of 511");
    }

    // safetensors: every malformed class, as the model.safetensors of an otherwise valid folder.
    {
        const fs::path folder = copyHf(dir / "hf");
        const std::string weights = (folder / "model.safetensors").string();
        struct Case {
            std::vector<std::uint8_t> bytes;
            const char* problem;
        };
        const std::string tensor = R"("model.embed_tokens.weight":{"dtype":"F32","shape":[512,64],"data_offsets":[0,131072]})";
        std::vector<std::uint8_t> lengthBeyond = safetensorsBytes("{" + tensor + "}", 131072);
        const std::uint64_t tooLong = 1ull << 40;
        std::memcpy(lengthBeyond.data(), &tooLong, 8);
        const Case cases[] = {
            {{1, 2, 3}, "too short"},
            {lengthBeyond, "beyond the end of the file"},
            {safetensorsBytes("{\"model.embed", 10), "not valid JSON"},
            {safetensorsBytes(R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unsupported dtype Q4 in tensor 't'"},
            {safetensorsBytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", 8), "beyond the data section"},
            {safetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 16), "overlap"},
            {safetensorsBytes(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "holds 8 bytes but shape [3] of F32 needs 12"},
            {safetensorsBytes("{" + tensor + "}", 131072), "missing tensor 'model.layers.0.input_layernorm.weight'"},
        };
        for (const Case& c : cases) {
            writeBytes(weights, c.bytes);
            expectBadInput({"info", folder.string()}, weights, c.problem);
            expectBadInput({"generate", folder.string(), "--steps", "4"}, weights, c.problem);
        }
    }

    // Hugging Face: inconsistent config, wrong tensor shape, missing tensor.
    {
        const fs::path folder = copyHf(dir / "hfconfig");
        const std::string config = (folder / "config.json").string();
        nlohmann::json j = nlohmann::json::parse(test::readTextFile(config));
        j.erase("head_dim");
        j["num_attention_heads"] = 7;
        j["num_key_value_heads"] = 7;
        test::writeTextFile(config, j.dump());
        expectBadInput({"info", folder.string()}, config, "7 attention heads do not divide hidden_size 64");
        j["num_attention_heads"] = 8;
        j["num_key_value_heads"] = 3;
        test::writeTextFile(config, j.dump());
        expectBadInput({"info", folder.string()}, config, "3 key/value heads do not divide 8 attention heads");
        test::writeTextFile(config, "{ not json");
        expectBadInput({"info", folder.string()}, config, "invalid JSON");
        fs::remove(config);
        expectBadInput({"info", folder.string()}, folder.string(), "no config.json");

        const fs::path shapes = copyHf(dir / "hfshape");
        const std::string weights = (shapes / "model.safetensors").string();
        std::vector<std::pair<std::string, Tensor>> tensors;
        {
            const SafetensorsFile f = SafetensorsFile::open(weights);
            for (const auto& name : f.names()) {
                const Tensor t = f.tensor(name);
                const std::vector<float> v = t.toFloats();
                std::vector<std::int64_t> shape = t.shape();
                if (name == "model.layers.2.self_attn.k_proj.weight")
                    shape = {64, 32};
                tensors.emplace_back(name, Tensor::fromFloats(DType::F32, shape, v.data()));
            }
        }
        writeSafetensors(weights, tensors);
        expectBadInput({"info", shapes.string()}, weights,
                       "tensor 'model.layers.2.self_attn.k_proj.weight' has wrong shape; expected [32, 64], got [64, 32]");
        std::erase_if(tensors, [](const auto& t) { return t.first == "model.layers.4.mlp.down_proj.weight"; });
        tensors.erase(tensors.begin()); // and whatever sorted first, to change more than one thing
        for (auto& [name, t] : tensors)
            if (name == "model.layers.2.self_attn.k_proj.weight") {
                const std::vector<float> v = t.toFloats();
                t = Tensor::fromFloats(DType::F32, {32, 64}, v.data());
            }
        writeSafetensors(weights, tensors);
        const auto r = test::runCli({"info", shapes.string()});
        CLI_EXPECT(r, 1);
        QVERIFY2(r.err.find(weights + ": missing tensor '") != std::string::npos, r.err.c_str());
    }
}

QTEST_GUILESS_MAIN(TestCliContract)
#include "tst_cli_contract.moc"
