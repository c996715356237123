// The memory budget: what the process may still allocate (MemAvailable, cgroup limit, RLIMIT_DATA), the refusal
// message, and the places that allocate from a model's size refusing before they allocate.
#include "common/sanitizer.h"
#include "common/test_support.h"

#include "engine/attention_plan.h"
#include "engine/kv_cache.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <sys/resource.h>

using namespace mla;

class TestMemoryBudget : public QObject {
    Q_OBJECT

private slots:
    void availableMemoryIsPlausible();
    void dataLimitIsHonoured();
    void refusalStatesNeededAndAvailable();
    void formatsBytes();
    void hugeKvCacheIsRefusedBeforeAllocating();
};

void TestMemoryBudget::availableMemoryIsPlausible()
{
    const MemoryAvailability a = availableMemory();
    QVERIFY(a.bytes > (16u << 20));
    QVERIFY(!a.source.empty());
    QVERIFY(a.source != "unknown"); // Linux always has MemAvailable
}

void TestMemoryBudget::dataLimitIsHonoured()
{
#ifdef MLA_ADDRESS_SANITIZER
    MLA_SKIP("AddressSanitizer's shadow memory does not fit under a data limit");
#endif
    // Allow 64 MiB more than this process uses now: that is what is available.
    const std::string status = test::readTextFile("/proc/self/status");
    const auto at = status.find("VmData:");
    QVERIFY(at != std::string::npos);
    const std::uint64_t vmData = std::stoull(status.substr(at + 7)) * 1024;
    rlimit saved{};
    QVERIFY(::getrlimit(RLIMIT_DATA, &saved) == 0);
    rlimit lowered = saved;
    lowered.rlim_cur = vmData + (64u << 20);
    QVERIFY(::setrlimit(RLIMIT_DATA, &lowered) == 0);
    const MemoryAvailability limited = availableMemory();
    QVERIFY(::setrlimit(RLIMIT_DATA, &saved) == 0);
    QCOMPARE(limited.source, std::string("RLIMIT_DATA"));
    QVERIFY(limited.bytes <= (64u << 20));
    QVERIFY(limited.bytes > (32u << 20));
}

void TestMemoryBudget::refusalStatesNeededAndAvailable()
{
    requireMemory(1, "one byte");
    try {
        requireMemory(std::uint64_t(1) << 60, "a test allocation", "model.bin");
        QFAIL("2^60 bytes were not refused");
    } catch (const Error& e) {
        const std::string m = e.what();
        QVERIFY2(m.rfind("model.bin: a test allocation needs 1024.0 PiB of memory, ", 0) == 0, m.c_str());
        QVERIFY2(m.find(" available (") != std::string::npos, m.c_str());
    }
}

void TestMemoryBudget::formatsBytes()
{
    QCOMPARE(formatBytes(0), std::string("0 bytes"));
    QCOMPARE(formatBytes(1023), std::string("1023 bytes"));
    QCOMPARE(formatBytes(1536), std::string("1.5 KiB"));
    QCOMPARE(formatBytes(std::uint64_t(3) << 30), std::string("3.0 GiB"));
    QCOMPARE(formatBytes(std::uint64_t(5) << 40), std::string("5.0 TiB"));
}

void TestMemoryBudget::hugeKvCacheIsRefusedBeforeAllocating()
{
    // A consistent config whose cache is far larger than any machine: 32 KV heads of 128 dims in 8 layers is
    // 256 KiB per position, so 2^24 positions (the CLI's --steps limit) need 4 TiB. No weights are involved.
    ModelConfig c;
    c.hidden = 8;
    c.ffn = 8;
    c.layers = 8;
    c.heads = 32;
    c.kvHeads = 32;
    c.headDim = 128;
    c.vocab = 16;
    c.maxPositions = 1 << 24;
    c.validate("config.json");
    try {
        KvCache cache(c, std::int64_t(1) << 24, MlaForm::Absorbed);
        QFAIL("a 4 TiB KV cache was allocated");
    } catch (const Error& e) {
        const std::string m = e.what();
        QVERIFY2(m.find("a KV cache of 16777216 positions (256.0 KiB per position) needs 4.0 TiB of memory") == 0, m.c_str());
    }
    // A small one still works.
    KvCache small(c, 4, MlaForm::Absorbed);
    QCOMPARE(small.allocatedBytes(), std::size_t(4 * 256 * 1024));
}

QTEST_GUILESS_MAIN(TestMemoryBudget)
#include "tst_memory_budget.moc"
