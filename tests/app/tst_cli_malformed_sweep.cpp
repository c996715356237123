// A sweep of corrupted real checkpoints through the CLI: each real checkpoint (llama2.c .bin, GGUF, Hugging Face
// safetensors + config.json) truncated at ~50 offsets and with header bytes flipped, run through `info` and
// `generate --steps 4`. Truncation must exit 1 with one message naming the file; a flip must exit 1 likewise, or 0 when
// the corruption is harmless (a flipped weight or token byte); never a crash, a signal, a usage error or a hang.
// Lying shapes: well-formed files whose shapes disagree with each other (a transposed tensor with the right byte size,
// a config.json that describes another model) must be refused by the loader's shape checks.
#include "common/test_support.h"

#include <QElapsedTimer>

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace {

using mla::test::fileBytes;

using mla::test::writeBytes;

std::vector<std::string> nonEmptyLines(const std::string& s)
{
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty())
            out.push_back(line);
    return out;
}

struct Target {
    std::string name;
    fs::path model;   // what the CLI is given
    fs::path corrupt; // the file that is corrupted
    std::vector<std::uint8_t> original;
    std::size_t headerEnd = 0; // bytes of header (metadata) before the weights
};

struct Tally {
    int runs = 0;
    int exit0 = 0;
    int exit1 = 0;
};

// Runs one CLI command on the corrupted model and checks the contract; returns the exit code (-1 on failure).
int check(const Target& t, const std::vector<std::string>& args, const std::string& what, bool mustFail, Tally& tally,
          std::string* stderrText = nullptr)
{
    const auto r = mla::test::runCli(args, 20000);
    ++tally.runs;
    if (stderrText)
        *stderrText = r.err;
    const std::string context = t.name + " " + what + ": exit " + std::to_string(r.exitCode) + (r.crashed ? " CRASHED" : "")
                                + (r.timedOut ? " TIMED OUT" : "") + "\nstderr: " + r.err.substr(0, 1000);
    if (r.crashed || r.timedOut || (r.exitCode != 0 && r.exitCode != 1) || (mustFail && r.exitCode != 1)) {
        QTest::qFail(context.c_str(), __FILE__, __LINE__);
        return -1;
    }
    if (r.exitCode == 1) {
        ++tally.exit1;
        const auto lines = nonEmptyLines(r.err);
        // One message, naming the checkpoint (the folder for a Hugging Face checkpoint: config.json or the weights).
        const std::string named = t.model.string();
        if (lines.size() != 1 || lines[0].rfind("mla-workbench-cli: error: " + named, 0) != 0) {
            QTest::qFail(("not one message naming the file: " + context).c_str(), __FILE__, __LINE__);
            return -1;
        }
    } else {
        ++tally.exit0;
    }
    return r.exitCode;
}

// ~50 truncation lengths: the first bytes, a spread through the header, a spread through the weights, the last byte.
std::vector<std::size_t> truncationOffsets(const Target& t)
{
    std::set<std::size_t> cuts = {0, 1, 3, 4, 7, 8, 9, 12, 16, 23, 24, 27, 28, 29, 32};
    for (int i = 1; i <= 15; ++i)
        cuts.insert(t.headerEnd * static_cast<std::size_t>(i) / 16);
    const int dataCuts = t.headerEnd < 100 ? 36 : 18; // a llama2.c header is all of 28 bytes
    for (int i = 0; i < dataCuts; ++i)
        cuts.insert(t.headerEnd + (t.original.size() - t.headerEnd) * static_cast<std::size_t>(i) / static_cast<std::size_t>(dataCuts));
    cuts.insert(t.original.size() - 1);
    std::vector<std::size_t> out;
    for (auto c : cuts)
        if (c < t.original.size())
            out.push_back(c);
    return out;
}

// In the anonymous namespace with its targets' type (a unity batch would otherwise warn of a field of an internal type).
class TestCliMalformedSweep : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void truncations_data();
    void truncations();
    void headerFlips_data();
    void headerFlips();
    void weightFlipsAreHarmless();
    void lyingShapes_data();
    void lyingShapes();
    void cleanupTestCase();

private:
    Target target(const QString& name);
    QElapsedTimer m_timer;
    std::map<std::string, Target> m_targets;
};

} // namespace

void TestCliMalformedSweep::initTestCase()
{
    m_timer.start();
    // CLI runs sleep at OpenMP barriers instead of spinning, so that a busy machine does not slow them tenfold.
    if (qEnvironmentVariableIsEmpty("OMP_WAIT_POLICY"))
        qputenv("OMP_WAIT_POLICY", "passive");
    const fs::path dir = mla::test::scratchDir("sweep");
    const fs::path models = mla::test::modelsDir();

    fs::create_directories(dir / "bin");
    fs::copy_file(mla::test::demoDir() / "stories260K.bin", dir / "bin" / "stories260K.bin");
    fs::copy_file(mla::test::demoDir() / "tok512.bin", dir / "bin" / "tok512.bin");
    Target bin{"bin", dir / "bin" / "stories260K.bin", dir / "bin" / "stories260K.bin", {}, 28};

    fs::create_directories(dir / "gguf");
    fs::copy_file(models / "stories260K" / "stories260K.gguf", dir / "gguf" / "stories260K.gguf");
    Target gguf{"gguf", dir / "gguf" / "stories260K.gguf", dir / "gguf" / "stories260K.gguf", {}, 14176};

    fs::create_directories(dir / "hf");
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.bin"})
        fs::copy_file(models / "stories260K-hf" / f, dir / "hf" / f);
    Target hf{"safetensors", dir / "hf", dir / "hf" / "model.safetensors", {}, 0};
    Target config{"config.json", dir / "hf", dir / "hf" / "config.json", {}, 0};

    for (Target* t : {&bin, &gguf, &hf, &config})
        t->original = fileBytes(t->corrupt);
    std::uint64_t headerLength = 0;
    std::memcpy(&headerLength, hf.original.data(), 8);
    hf.headerEnd = 8 + static_cast<std::size_t>(headerLength);
    config.headerEnd = config.original.size();
    for (Target* t : {&bin, &gguf, &hf, &config}) {
        // Each starts out valid.
        const auto r = mla::test::runCli({"generate", t->model.string(), "--steps", "4"});
        QVERIFY2(r.exitCode == 0, (t->name + ": " + r.err).c_str());
        m_targets[t->name] = *t;
    }
}

Target TestCliMalformedSweep::target(const QString& name)
{
    return m_targets.at(name.toStdString());
}

void TestCliMalformedSweep::truncations_data()
{
    QTest::addColumn<QString>("name");
    for (const char* n : {"bin", "gguf", "safetensors"})
        QTest::newRow(n) << QString(n);
}

void TestCliMalformedSweep::truncations()
{
    QFETCH(QString, name);
    const Target t = target(name);
    Tally tally;
    const auto cuts = truncationOffsets(t);
    QVERIFY(cuts.size() >= 45);
    for (std::size_t i = 0; i < cuts.size(); ++i) {
        writeBytes(t.corrupt, std::vector<std::uint8_t>(t.original.begin(), t.original.begin() + static_cast<std::ptrdiff_t>(cuts[i])));
        const std::string what = "truncated to " + std::to_string(cuts[i]) + " bytes";
        // Every byte of these files is accounted for, so every truncation is an error.
        if (check(t, {"generate", t.model.string(), "--steps", "4"}, what + ", generate", true, tally) < 0)
            break;
        if (i % 3 == 0 && check(t, {"info", t.model.string(), "--json"}, what + ", info", true, tally) < 0)
            break;
    }
    writeBytes(t.corrupt, t.original);
    qInfo("%s: %d runs, all exit 1", t.name.c_str(), tally.runs);
}

void TestCliMalformedSweep::headerFlips_data()
{
    QTest::addColumn<QString>("name");
    for (const char* n : {"bin", "gguf", "safetensors", "config.json"})
        QTest::newRow(n) << QString(n);
}

void TestCliMalformedSweep::headerFlips()
{
    QFETCH(QString, name);
    const Target t = target(name);
    // Offsets to flip: every byte of a llama2.c header; otherwise the fixed fields at the start, then a spread through
    // the header (for GGUF denser at its end, where the tensor records are).
    std::set<std::size_t> offsets;
    if (t.name == "bin") {
        for (std::size_t i = 0; i < 28; ++i)
            offsets.insert(i);
    } else {
        for (std::size_t i : {0, 1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 20, 23, 24, 25, 28, 31, 32})
            offsets.insert(i);
        const std::size_t spread = t.name == "gguf" ? 11700 : t.headerEnd;
        for (int i = 0; i < 30; ++i)
            offsets.insert(spread * static_cast<std::size_t>(i) / 30);
        if (t.name == "gguf")
            for (int i = 0; i < 30; ++i)
                offsets.insert(11700 + (t.headerEnd - 11700) * static_cast<std::size_t>(i) / 30);
    }
    Tally tally;
    for (std::size_t offset : offsets) {
        if (offset >= t.original.size())
            continue;
        for (std::uint8_t mask : {std::uint8_t(0xff), std::uint8_t(0x01)}) {
            if (t.name != "bin" && mask == 0x01 && offset % 2 == 1)
                continue; // keep the run count down: single-bit flips on every other offset
            std::vector<std::uint8_t> bytes = t.original;
            bytes[offset] ^= mask;
            writeBytes(t.corrupt, bytes);
            const std::string what = "byte " + std::to_string(offset) + " ^ " + std::to_string(mask);
            const bool json = offset % 2 == 0;
            std::vector<std::string> args = {"generate", t.model.string(), "--steps", "4"};
            if (json)
                args.push_back("--json");
            if (check(t, args, what + ", generate", false, tally) < 0)
                break;
        }
    }
    writeBytes(t.corrupt, t.original);
    qInfo("%s: %d runs: %d exit 1, %d exit 0", t.name.c_str(), tally.runs, tally.exit1, tally.exit0);
    // The fixed fields are checked: most flips there are caught.
    QVERIFY(tally.exit1 > tally.runs / 4);
}

void TestCliMalformedSweep::weightFlipsAreHarmless()
{
    // Flipping bytes inside the weights (including exponent bytes, making huge values, infinities or NaNs) is not a
    // format error: the checkpoint loads and generation runs to completion (its text may be garbage).
    for (const char* n : {"bin", "gguf", "safetensors"}) {
        const Target t = target(n);
        Tally tally;
        for (int i = 1; i <= 4; ++i) {
            std::vector<std::uint8_t> bytes = t.original;
            const std::size_t at = t.headerEnd + (bytes.size() - t.headerEnd) * static_cast<std::size_t>(i) / 5;
            const std::size_t exponent = at - at % 4 + 3; // the high byte of a float32
            bytes[exponent] ^= static_cast<std::uint8_t>(i == 4 ? 0x7f : 0x40);
            bytes[at - at % 4 + 2] |= 0x80;
            writeBytes(t.corrupt, bytes);
            const auto r = mla::test::runCli({"generate", t.model.string(), "--steps", "6", "--json"}, 20000);
            ++tally.runs;
            QVERIFY2(!r.crashed && !r.timedOut && r.exitCode == 0, (t.name + ": " + r.err).c_str());
        }
        writeBytes(t.corrupt, t.original);
    }
}

void TestCliMalformedSweep::lyingShapes_data()
{
    QTest::addColumn<QString>("file");  // "safetensors" (a tensor record of the header) or "config.json"
    QTest::addColumn<QString>("key");   // the tensor, or the config key
    QTest::addColumn<QString>("value"); // JSON: the new shape, or the new config value
    QTest::addColumn<QString>("expected"); // in the message
    // Same byte size, so the safetensors reader accepts them; only the model's shape checks can tell.
    QTest::newRow("gate_proj transposed") << "safetensors" << "model.layers.0.mlp.gate_proj.weight" << "[64, 172]" << "has wrong shape";
    QTest::newRow("k_proj transposed") << "safetensors" << "model.layers.3.self_attn.k_proj.weight" << "[64, 32]" << "has wrong shape";
    QTest::newRow("embedding reshaped") << "safetensors" << "model.embed_tokens.weight" << "[256, 128]" << "has wrong shape";
    QTest::newRow("norm as a matrix") << "safetensors" << "model.norm.weight" << "[8, 8]" << "has wrong shape";
    // A config.json describing a different model than the weights beside it.
    QTest::newRow("hidden_size") << "config.json" << "hidden_size" << "32" << "has wrong shape";
    QTest::newRow("one layer more") << "config.json" << "num_hidden_layers" << "6" << "missing tensor";
    QTest::newRow("kv heads") << "config.json" << "num_key_value_heads" << "8" << "has wrong shape";
    QTest::newRow("head_dim") << "config.json" << "head_dim" << "16" << "has wrong shape";
    QTest::newRow("vocab_size") << "config.json" << "vocab_size" << "1024" << "has wrong shape";
    QTest::newRow("intermediate_size") << "config.json" << "intermediate_size" << "171" << "has wrong shape";
    QTest::newRow("untied, no lm_head") << "config.json" << "tie_word_embeddings" << "false" << "missing tensor";
}

void TestCliMalformedSweep::lyingShapes()
{
    QFETCH(QString, file);
    QFETCH(QString, key);
    QFETCH(QString, value);
    QFETCH(QString, expected);
    const Target t = target(file);
    const nlohmann::json newValue = nlohmann::json::parse(value.toStdString());
    std::vector<std::uint8_t> bytes;
    if (file == "config.json") {
        nlohmann::json config = nlohmann::json::parse(t.original.begin(), t.original.end());
        config[key.toStdString()] = newValue;
        const std::string text = config.dump(2);
        bytes.assign(text.begin(), text.end());
    } else {
        nlohmann::json header = nlohmann::json::parse(t.original.begin() + 8, t.original.begin() + static_cast<std::ptrdiff_t>(t.headerEnd));
        QVERIFY(header.contains(key.toStdString()));
        header[key.toStdString()]["shape"] = newValue;
        std::string text = header.dump();
        text.append((8 - text.size() % 8) % 8, ' ');
        const std::uint64_t length = text.size();
        bytes.resize(8);
        std::memcpy(bytes.data(), &length, 8);
        bytes.insert(bytes.end(), text.begin(), text.end());
        bytes.insert(bytes.end(), t.original.begin() + static_cast<std::ptrdiff_t>(t.headerEnd), t.original.end());
    }
    struct Restore {
        const Target& t;
        ~Restore() { writeBytes(t.corrupt, t.original); }
    } restore{t};
    writeBytes(t.corrupt, bytes);
    Tally tally;
    for (const auto& args : {std::vector<std::string>{"info", t.model.string(), "--json"},
                             std::vector<std::string>{"generate", t.model.string(), "--steps", "4"}}) {
        std::string err;
        if (check(t, args, key.toStdString() + " = " + value.toStdString() + ", " + args[0], true, tally, &err) < 0)
            break;
        QVERIFY2(err.find(expected.toStdString()) != std::string::npos, err.c_str());
    }
}

void TestCliMalformedSweep::cleanupTestCase()
{
    qInfo("sweep took %.1f s", static_cast<double>(m_timer.elapsed()) / 1000.0);
}

QTEST_GUILESS_MAIN(TestCliMalformedSweep)
#include "tst_cli_malformed_sweep.moc"
