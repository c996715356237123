// Models too large for this machine's memory, through the CLI: weights stay memory-mapped (streamed by the kernel),
// and what would be allocated from a model's size is refused up front with the needed and the available size,
// instead of failing halfway or being killed by the kernel.
#include "common/sanitizer.h"
#include "common/test_support.h"

#include "formats/synthetic_checkpoint.h"

#include <QElapsedTimer>
#include <QProcess>

#include <cstdint>
#include <fstream>
#include <sys/stat.h>

namespace fs = std::filesystem;

class TestResourceLimits : public QObject {
    Q_OBJECT

private slots:
    void hugeKvCacheIsRefused();
    void copiesBeyondTheDataLimitAreRefused();
};

void TestResourceLimits::hugeKvCacheIsRefused()
{
    // Lying but consistent: a 1 MB checkpoint whose shapes all agree with its config.json, with 32 KV heads of 128
    // dims and a context of 2^24 positions. generate --steps 2^24 would need a 1 TiB cache.
    mla::ModelConfig c;
    c.hidden = 8;
    c.ffn = 8;
    c.layers = 2;
    c.heads = 32;
    c.kvHeads = 32;
    c.headDim = 128;
    c.vocab = 16;
    c.maxPositions = 1 << 24;
    c.bosId = 1;
    c.eosIds = {2};
    mla::SyntheticOptions options;
    options.dtype = mla::DType::F32;
    const fs::path model = mla::test::scratchDir("resource_limits") / "wide-kv";
    mla::writeSyntheticCheckpoint({"wide-kv", "resource-limit test model", c}, options, model);

    QElapsedTimer timer;
    timer.start();
    const auto r = mla::test::runCli({"generate", model.string(), "--steps", "16777216"});
    QVERIFY2(!r.crashed && r.exitCode == 1, (std::to_string(r.exitCode) + " " + r.err).c_str());
    // The message names the checkpoint (its folder or the weights file in it) and the arithmetic of the refusal.
    QVERIFY2(r.err.rfind("mla-workbench-cli: error: " + model.string(), 0) == 0, r.err.c_str());
    const std::string expected = ": a KV cache of 16777216 positions (64.0 KiB per position) needs 1.0 TiB of memory, ";
    QVERIFY2(r.err.find(expected) != std::string::npos, r.err.c_str());
    QVERIFY2(r.err.find(" available (") != std::string::npos, r.err.c_str());
    QVERIFY2(timer.elapsed() < 60000, "the refusal came late");

    // The same model runs when asked for what fits.
    const auto small = mla::test::runCli({"generate", model.string(), "--steps", "8"});
    QVERIFY2(small.exitCode == 0, small.err.c_str());
}

void TestResourceLimits::copiesBeyondTheDataLimitAreRefused()
{
#ifdef MLA_ADDRESS_SANITIZER
    MLA_SKIP("AddressSanitizer's shadow memory does not fit under a data limit");
#endif
    // A llama2.c checkpoint of 8 layers at dim 4096 is 2 GiB, written sparse (only its header holds data). Its
    // weights are mapped, not read; only the query and key rows are copied (reordered into the half RoPE layout),
    // 1 GiB, which does not fit under a 512 MiB data limit (ulimit -d): `info` must refuse before copying.
    const std::int32_t dim = 4096, hidden = 16, layers = 8, heads = 32, vocab = 16, seqLen = 16;
    const std::uint64_t headDim = dim / heads;
    const std::uint64_t floats = std::uint64_t(vocab) * dim
                                 + std::uint64_t(layers) * (2 * dim + 4 * std::uint64_t(dim) * dim + 3 * std::uint64_t(dim) * hidden)
                                 + dim + std::uint64_t(seqLen) * headDim;
    const fs::path file = mla::test::scratchDir("resource_limits_sparse") / "huge.bin";
    {
        std::ofstream out(file, std::ios::binary);
        const std::int32_t header[7] = {dim, hidden, layers, heads, heads, vocab, seqLen};
        out.write(reinterpret_cast<const char*>(header), sizeof header);
    }
    std::error_code ec;
    fs::resize_file(file, 28 + floats * 4, ec);
    struct stat st {};
    if (ec || ::stat(file.c_str(), &st) != 0 || static_cast<std::uint64_t>(st.st_blocks) * 512 > (64u << 20))
        MLA_SKIP("this filesystem cannot hold a sparse 2 GiB file");

    const std::string command = "ulimit -d 524288 && exec '" + mla::test::cliPath().string() + "' info '" + file.string() + "'";
    QProcess process;
    process.start("bash", {"-c", QString::fromStdString(command)});
    QVERIFY(process.waitForFinished(120000));
    const std::string err = process.readAllStandardError().toStdString();
    QVERIFY2(process.exitStatus() == QProcess::NormalExit && process.exitCode() == 1, err.c_str());
    const std::string expected = "mla-workbench-cli: error: " + file.string()
                                 + ": reordering the query and key rows of 8 layers into the RoPE layout needs 1.0 GiB of memory, ";
    QVERIFY2(err.rfind(expected, 0) == 0, err.c_str());
    QVERIFY2(err.find("(RLIMIT_DATA)") != std::string::npos, err.c_str());
    fs::remove(file);
}

QTEST_GUILESS_MAIN(TestResourceLimits)
#include "tst_resource_limits.moc"
