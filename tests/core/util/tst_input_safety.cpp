// Input safety: only regular files are read (a FIFO, device or socket is an error at once, never a hang), JSON is size-
// and depth-limited before parsing, a mapped file that shrinks is an error and not SIGBUS, companion files leave the
// model folder only as regular files inside it, and a file that is no checkpoint says so.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "conversion/converter.h"
#include "engine/transformer.h"
#include "model/model_loader.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/input_integrity.h"
#include "util/json_util.h"
#include "util/mapped_file.h"

#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <sys/stat.h>
#include <unistd.h>

using namespace mla;
namespace fs = std::filesystem;

namespace {

// Runs `f` and returns its Error message. A call still running after 10 s is reported as a hang (and a writer opens
// the FIFO so that the blocked call can finish and the test can end).
template <class F>
std::string errorWithin10s(F f, const fs::path& fifo = {})
{
    auto result = std::async(std::launch::async, [f] {
        try {
            f();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    });
    if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        if (!fifo.empty()) {
            const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
            if (fd >= 0)
                ::close(fd);
        }
        result.wait();
        return "HUNG";
    }
    return result.get();
}

bool contains(const std::string& s, const std::string& part)
{
    return s.find(part) != std::string::npos;
}

// Clears the process-wide record of a damaged map once its error has been seen, so later tests start clean.
void drainDamage()
{
    for (int i = 0; i < 16; ++i) {
        try {
            checkMappedInputs();
            return;
        } catch (const Error&) {
        }
    }
}

} // namespace

class TestInputSafety : public QObject {
    Q_OBJECT

private slots:
    void init();
    void fifoIsRefusedAtOnce();
    void devicesAreRefused();
    void oversizedJsonIsRefusedBeforeReading();
    void deeplyNestedJsonIsRefused();
    void mappedFileThatShrinksIsAnError();
    void modelTruncatedWhileInUseIsAnError();
    void companionFilesStayInsideTheModelFolder();
    void aFileThatIsNoCheckpointSaysSo();

private:
    fs::path m_dir;
};

void TestInputSafety::init()
{
    m_dir = test::scratchDir(QTest::currentTestFunction());
}

void TestInputSafety::fifoIsRefusedAtOnce()
{
    const fs::path fifo = m_dir / "model.bin";
    QVERIFY(::mkfifo(fifo.c_str(), 0600) == 0);
    const std::string mapped = errorWithin10s([&] { MappedFile::open(fifo); }, fifo);
    QVERIFY2(contains(mapped, "FIFO") || contains(mapped, "not a regular file"), mapped.c_str());
    const std::string read = errorWithin10s([&] { readInputFile(fifo, 1 << 20, "config.json"); }, fifo);
    QVERIFY2(contains(read, "FIFO"), read.c_str());
    const std::string model = errorWithin10s([&] { loadModel(fifo); }, fifo);
    QVERIFY2(contains(model, "FIFO") && contains(model, fifo.string()), model.c_str());
    const std::string tokenizer = errorWithin10s([&] { loadTokenizer(fifo); }, fifo);
    QVERIFY2(contains(tokenizer, "regular file") || contains(tokenizer, "FIFO"), tokenizer.c_str());
}

void TestInputSafety::devicesAreRefused()
{
    // A config.json that is /dev/zero would be read forever; /dev/null as a model is no file either.
    const fs::path model = m_dir / "model";
    fs::copy(test::realModelPath("stories260K-hf"), model, fs::copy_options::recursive);
    fs::remove(model / "config.json");
    fs::create_symlink("/dev/zero", model / "config.json");
    const std::string config = errorWithin10s([&] { loadModel(model); });
    QVERIFY2(contains(config, "device") && contains(config, "config.json"), config.c_str());
    const std::string null = errorWithin10s([&] { loadModel("/dev/null"); });
    QVERIFY2(contains(null, "device"), null.c_str());
}

void TestInputSafety::oversizedJsonIsRefusedBeforeReading()
{
    const fs::path model = m_dir / "model";
    fs::copy(test::realModelPath("stories260K-hf"), model, fs::copy_options::recursive);
    {
        std::ofstream out(model / "config.json", std::ios::binary | std::ios::trunc);
        out << "{\"model_type\": \"llama\"";
        out << std::string(17 << 20, ' ') << "}";
    }
    const std::string e = errorWithin10s([&] { loadModel(model); });
    QVERIFY2(contains(e, "too large") && contains(e, "16.0 MiB"), e.c_str());
}

void TestInputSafety::deeplyNestedJsonIsRefused()
{
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    // config.json
    const fs::path model = m_dir / "model";
    fs::copy(test::realModelPath("stories260K-hf"), model, fs::copy_options::recursive);
    std::string config = test::readTextFile(model / "config.json");
    config.insert(config.rfind('}'), ", \"deep\": " + deep);
    test::writeTextFile(model / "config.json", config);
    const std::string c = errorWithin10s([&] { loadModel(model); });
    QVERIFY2(contains(c, "nests") && contains(c, "config.json"), c.c_str());
    // tokenizer.json
    test::writeTextFile(m_dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": " + deep + "}}");
    const std::string t = errorWithin10s([&] { loadTokenizer(m_dir / "tokenizer.json"); });
    QVERIFY2(contains(t, "nests") && contains(t, "tokenizer.json"), t.c_str());
    // Braces and brackets inside strings do not count.
    QVERIFY(errorWithin10s([] { checkJsonNesting("{\"a\": \"" + std::string(1000, '[') + "\"}", "x.json"); }) == "no error");
    QVERIFY(errorWithin10s([] { checkJsonNesting(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']'), "x.json"); })
            == "no error");
}

void TestInputSafety::mappedFileThatShrinksIsAnError()
{
    const fs::path file = m_dir / "weights.bin";
    test::writeTextFile(file, std::string(1 << 20, '\x7f'));
    {
        const auto mapped = MappedFile::open(file);
        QCOMPARE(static_cast<int>(mapped->data()[600000]), 0x7f);
        fs::resize_file(file, 4096);
        // Without the handler this read killed the process with SIGBUS; now it reads zeros and the map is damaged.
        volatile std::uint8_t past = mapped->data()[600000];
        QCOMPARE(static_cast<int>(past), 0);
        QCOMPARE(static_cast<int>(mapped->data()[100]), 0x7f);
        QVERIFY(mapped->damaged());
        const std::string e = errorWithin10s([] { checkMappedInputs(); });
        QVERIFY2(contains(e, "changed while it was in use") && contains(e, file.string()), e.c_str());
    }
    // Closed since, the damage is still reported once (results made from it may be in use), then forgotten.
    QVERIFY(!errorWithin10s([] { checkMappedInputs(); }).empty());
    drainDamage();
    QCOMPARE(errorWithin10s([] { checkMappedInputs(); }), std::string("no error"));
}

void TestInputSafety::modelTruncatedWhileInUseIsAnError()
{
    const fs::path model = m_dir / "model";
    fs::copy(test::realModelPath("stories260K-hf"), model, fs::copy_options::recursive);
    std::string error;
    {
        const Transformer t(loadModel(model));
        fs::resize_file(model / "model.safetensors", 1024);
        error = errorWithin10s([&] {
            KvCache cache = t.newCache(4);
            const std::vector<int> ids = {1, 2, 3};
            t.forward(ids, cache, Logits::All);
        });
    }
    drainDamage();
    QVERIFY2(contains(error, "changed while it was in use") && contains(error, "model.safetensors"), error.c_str());
}

void TestInputSafety::companionFilesStayInsideTheModelFolder()
{
    const fs::path model = m_dir / "model";
    fs::copy(test::realModelPath("stories260K-hf"), model, fs::copy_options::recursive);
    fs::create_directories(m_dir / "private");
    test::writeTextFile(m_dir / "private" / "secret.json", "{\"token\": \"s3cr3t\"}");
    fs::create_symlink(m_dir / "private" / "secret.json", model / "generation_config.json");
    test::writeTextFile(model / "real_special_tokens.json", "{}");
    fs::create_symlink("real_special_tokens.json", model / "special_tokens_map.json"); // inside: fine
    QVERIFY(::mkfifo((model / "merges.txt").c_str(), 0600) == 0);
    const Model m = loadModel(model);
    std::vector<std::string> skipped;
    const auto files = companionFiles(m, &skipped);
    auto listed = [&](const char* name) {
        return std::find(files.begin(), files.end(), model / name) != files.end();
    };
    QVERIFY(!listed("generation_config.json"));
    QVERIFY(!listed("merges.txt"));
    QVERIFY(listed("special_tokens_map.json"));
    QVERIFY(listed("tokenizer.bin"));
    QCOMPARE(skipped.size(), std::size_t(2));
    QVERIFY2(contains(skipped[0] + skipped[1], "outside the model folder"), (skipped[0] + skipped[1]).c_str());
}

void TestInputSafety::aFileThatIsNoCheckpointSaysSo()
{
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"notes.bin", std::string("These are my notes.\n") + std::string(200, 'x')},
        {"model.pt", std::string("PK\x03\x04", 4) + std::string(100, '\0')},
        {"pickle.bin", std::string("\x80\x02}q\0", 5) + std::string(100, '\0')},
        {"config.bin", "{\"hidden_size\": 64}"},
        {"session.bin", std::string("\x89HDF\r\n\x1a\n", 8) + std::string(100, '\0')},
        {"empty.bin", ""},
    };
    for (const auto& [fileName, content] : cases) {
        // clang 14 cannot capture a structured binding in a lambda: copy the name first.
        const std::string name = fileName;
        const std::filesystem::path path = m_dir / name;
        test::writeTextFile(path, content);
        const std::string e = errorWithin10s([&] { loadModel(path); });
        QVERIFY2(contains(e, "not a safetensors/GGUF/llama2.c checkpoint") && contains(e, name), e.c_str());
        QVERIFY2(!contains(e, "heads do not divide"), e.c_str());
    }
}

QTEST_GUILESS_MAIN(TestInputSafety)
#include "tst_input_safety.moc"
