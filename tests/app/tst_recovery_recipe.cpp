// The recovery recipe (resources/recovery/distill.py) end to end with the CLI: distillation lowers the held-out KL of a
// converted stories260K, the folder it writes reloads in `mla-workbench-cli eval` with that same KL, and the recipe
// under torchrun (2 processes, gloo, CPU) follows the loss curve of one process with the same global batch.
#include "common/model_fixtures.h"
#include "common/python_torch.h"
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>

using nlohmann::json;
using namespace mla;

namespace {

const std::filesystem::path kRepo = test::sourceDir().parent_path();
const std::filesystem::path kRecipe = kRepo / "resources" / "recovery" / "distill.py";

json runCliJson(const std::vector<std::string>& args)
{
    const test::ProcessResult r = test::runCli(args, 300000);
    if (r.exitCode != 0 || r.crashed)
        qFatal("CLI %s failed (%d): %s", args[0].c_str(), r.exitCode, r.err.c_str());
    return json::parse(r.out);
}

// Sequences sampled from the original by the CLI, one per line (the --ids format).
void writeSampledIds(const std::filesystem::path& path, int count, int steps, int seed)
{
    std::string lines;
    for (int i = 0; i < count; ++i) {
        const json g = runCliJson({"generate", "--steps", std::to_string(steps), "--temperature", "1", "--top-p", "1",
                                   "--seed", std::to_string(seed + i), "--json"});
        std::string line;
        for (int id : g["prompt_ids"].get<std::vector<int>>())
            line += std::to_string(id) + " ";
        for (int id : g["ids"].get<std::vector<int>>())
            line += std::to_string(id) + " ";
        lines += line + "\n";
    }
    test::writeTextFile(path, lines);
}

// The recipe's last stdout line.
json lastJsonLine(const test::ProcessResult& r)
{
    const std::string& out = r.out;
    std::size_t end = out.find_last_not_of("\n");
    if (end == std::string::npos)
        qFatal("the recipe printed nothing; stderr: %s", r.err.c_str());
    const std::size_t begin = out.rfind('\n', end);
    return json::parse(out.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1) + 1));
}

std::set<std::string> tensorNames(const std::filesystem::path& file)
{
    std::ifstream in(file, std::ios::binary);
    std::uint64_t length = 0;
    in.read(reinterpret_cast<char*>(&length), 8);
    std::string header(length, '\0');
    in.read(header.data(), static_cast<std::streamsize>(length));
    std::set<std::string> names;
    const json parsed = json::parse(header);
    for (auto it = parsed.begin(); it != parsed.end(); ++it) {
        if (it.key() != "__metadata__")
            names.insert(it.key() + " " + it.value().value("dtype", std::string("?")) + " " + it.value()["shape"].dump());
    }
    return names;
}

void expectCurvesEqual(const json& a, const json& b, double tolerance)
{
    const auto x = a["losses"].get<std::vector<double>>();
    const auto y = b["losses"].get<std::vector<double>>();
    QCOMPARE(x.size(), y.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double rel = std::abs(x[i] - y[i]) / std::abs(x[i]);
        QVERIFY2(rel <= tolerance, qPrintable(QString("step %1: %2 vs %3").arg(i + 1).arg(x[i], 0, 'g', 10).arg(y[i], 0, 'g', 10)));
    }
    QVERIFY(std::abs(a["kl_after"].get<double>() - b["kl_after"].get<double>()) <= tolerance * a["kl_after"].get<double>());
}

} // namespace

class TestRecoveryRecipe : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void roundTripLowersTheHeldOutKl();
    void refusesToReplaceAFolder();
    void ddpFollowsOneProcess();
    void fsdpFollowsOneProcess();

private:
    test::ProcessResult recipe(const std::vector<std::string>& args, int processes = 1, const std::string& strategy = {});
    const json& oneProcessBaseline();
    std::vector<std::string> distributedArgs(const std::string& out) const;

    std::filesystem::path m_dir, m_student, m_teacher, m_heldOut, m_train;
    json m_baseline;
};

void TestRecoveryRecipe::initTestCase()
{
    MLA_REQUIRE_TORCH();
    m_dir = test::scratchDir("recovery-recipe");
    m_student = m_dir / "student";
    m_teacher = m_dir / "teacher";
    // The student: stories260K at 75% KV saving (2-norm pairs, joint latent); the teacher: the original, written as a
    // folder unchanged (every pair keeps RoPE, no latent), the way the recipe documents for a llama2.c file.
    runCliJson({"convert", "--out", m_student.string(), "--kv-saving", "0.75", "--calib-samples", "4", "--calib-seq-len", "64",
                "--quiet", "--json"});
    runCliJson({"convert", "--out", m_teacher.string(), "--rope-strategy", "high", "--rope-pairs", "4", "--svd", "none", "--quiet",
                "--json"});
    m_heldOut = m_dir / "heldout.txt";
    m_train = m_dir / "train.txt";
    writeSampledIds(m_heldOut, 4, 64, 900);
    writeSampledIds(m_train, 8, 48, 300);
}

test::ProcessResult TestRecoveryRecipe::recipe(const std::vector<std::string>& args, int processes, const std::string& strategy)
{
    std::vector<std::string> all;
    if (processes > 1) {
        // --redirects/--tee: Debian's torch 1.13 on Python 3.11 starts its workers only with them.
        all = {"-m", "torch.distributed.run", "--standalone", "--nproc_per_node", std::to_string(processes), "--redirects",
               "2", "--tee", "2"};
    }
    all.push_back(kRecipe.string());
    all.insert(all.end(), args.begin(), args.end());
    if (!strategy.empty())
        all.insert(all.end(), {"--strategy", strategy});
    return test::runProgram(test::pythonTorch().python, all, 600000, m_dir);
}

void TestRecoveryRecipe::roundTripLowersTheHeldOutKl()
{
    const auto out = m_dir / "recovered";
    const test::ProcessResult r = recipe({"--teacher", m_teacher.string(), "--student", m_student.string(), "--sample", "32",
                                          "--seq-len", "32", "--eval-ids", m_heldOut.string(), "--steps", "100", "--batch",
                                          "2", "--lr", "3e-3", "--log-every", "50", "--out", out.string()});
    QVERIFY2(r.exitCode == 0 && !r.crashed, r.err.c_str());
    QVERIFY2(r.out.find("step 50/100") != std::string::npos, r.out.c_str());
    const json j = lastJsonLine(r);
    const double before = j["kl_before"].get<double>();
    const double after = j["kl_after"].get<double>();
    qInfo("held-out KL %.4f -> %.4f, perplexity %.3f -> %.3f (original %.3f), %lld training tokens", before, after,
          j["ppl_before"].get<double>(), j["ppl_after"].get<double>(), j["reference_ppl"].get<double>(),
          static_cast<long long>(j["tokens"].get<std::int64_t>()));
    QVERIFY2(after < 0.8 * before, qPrintable(QString("%1 -> %2").arg(before).arg(after)));
    QCOMPARE(j["tokens"].get<std::int64_t>(), std::int64_t(100 * 2 * 32));
    QCOMPARE(j["out"].get<std::string>(), std::filesystem::absolute(out).string());

    // The workbench reloads the checkpoint and measures the same KL on the same held-out ids.
    const json e = runCliJson({"eval", out.string(), "--reference", test::realModelPath("stories260K").string(), "--ids",
                               m_heldOut.string(), "--json"});
    QVERIFY2(std::abs(e["kl"].get<double>() - after) <= 1e-4 * after,
             qPrintable(QString("CLI %1, recipe %2").arg(e["kl"].get<double>(), 0, 'g', 10).arg(after, 0, 'g', 10)));
    QVERIFY(std::abs(e["ppl"].get<double>() - j["ppl_after"].get<double>()) <= 1e-4 * e["ppl"].get<double>());

    // An export folder again: same tensors (names, dtypes, shapes), same config.json but for nothing, the PyTorch files
    // and the recovery on record.
    QCOMPARE(tensorNames(out / "model.safetensors"), tensorNames(m_student / "model.safetensors"));
    QCOMPARE(json::parse(test::readTextFile(out / "config.json")), json::parse(test::readTextFile(m_student / "config.json")));
    QCOMPARE(test::readTextFile(out / "modeling_mla.py"), test::readTextFile(kRepo / "resources" / "modeling_mla.py"));
    QVERIFY(std::filesystem::exists(out / "recovery" / "distill.py"));
    QVERIFY(std::filesystem::exists(out / "tok512.bin"));
    const json record = json::parse(test::readTextFile(out / "recovery.json"));
    QCOMPARE(record["kl_after"].get<double>(), after);
    QVERIFY(test::readTextFile(out / "README.md").find("## Recovery") != std::string::npos);
    for (const auto& entry : std::filesystem::directory_iterator(m_dir))
        QVERIFY2(entry.path().filename().string().find(".partial-") == std::string::npos, entry.path().c_str());
}

void TestRecoveryRecipe::refusesToReplaceAFolder()
{
    const auto out = m_dir / "occupied";
    std::filesystem::create_directories(out);
    test::writeTextFile(out / "notes.txt", "mine");
    const test::ProcessResult r = recipe({"--teacher", m_teacher.string(), "--student", m_student.string(), "--ids",
                                          m_train.string(), "--steps", "1", "--out", out.string()});
    QVERIFY(r.exitCode != 0);
    QVERIFY2(r.err.find("exists and is not empty") != std::string::npos, r.err.c_str());
    QCOMPARE(test::readTextFile(out / "notes.txt"), std::string("mine"));
    const test::ProcessResult inside = recipe({"--teacher", m_teacher.string(), "--student", m_student.string(), "--ids",
                                               m_train.string(), "--steps", "1", "--out", (m_student / "sub").string()});
    QVERIFY(inside.exitCode != 0);
    QVERIFY2(inside.err.find("inputs are never written") != std::string::npos, inside.err.c_str());
    QVERIFY(!std::filesystem::exists(m_student / "sub"));
}

std::vector<std::string> TestRecoveryRecipe::distributedArgs(const std::string& out) const
{
    // 4 sequences per step in 2 micro-batches: one process takes 2 + 2, two processes 1 + 1 each.
    return {"--teacher", m_teacher.string(), "--student", m_student.string(), "--ids", m_train.string(), "--seq-len", "48",
            "--eval-sequences", "2", "--steps", "6", "--batch", "4", "--grad-accum", "2", "--lr", "3e-3", "--log-every",
            "1", "--out", (m_dir / out).string()};
}

const json& TestRecoveryRecipe::oneProcessBaseline()
{
    if (m_baseline.is_null()) {
        const test::ProcessResult r = recipe(distributedArgs("one-process"));
        if (r.exitCode != 0)
            qFatal("one process failed: %s", r.err.c_str());
        m_baseline = lastJsonLine(r);
    }
    return m_baseline;
}

void TestRecoveryRecipe::ddpFollowsOneProcess()
{
    const json& one = oneProcessBaseline();
    const test::ProcessResult r = recipe(distributedArgs("ddp"), 2);
    QVERIFY2(r.exitCode == 0 && !r.crashed, (r.out + r.err).c_str());
    const json two = lastJsonLine(r);
    QCOMPARE(two["world_size"].get<int>(), 2);
    QCOMPARE(two["strategy"].get<std::string>(), std::string("ddp"));
    expectCurvesEqual(one, two, 1e-5);
}

void TestRecoveryRecipe::fsdpFollowsOneProcess()
{
    if (!test::pythonTorch().fsdp)
        QSKIP(("FSDP cannot be imported in this PyTorch " + test::pythonTorch().torchVersion + " ("
               + test::pythonTorch().fsdpError.substr(0, 160) + ")").c_str());
    const json& one = oneProcessBaseline();
    const test::ProcessResult r = recipe(distributedArgs("fsdp"), 2, "fsdp");
    QVERIFY2(r.exitCode == 0 && !r.crashed, (r.out + r.err).c_str());
    const json two = lastJsonLine(r);
    QCOMPARE(two["strategy"].get<std::string>(), std::string("fsdp"));
    expectCurvesEqual(one, two, 1e-5);
}

QTEST_GUILESS_MAIN(TestRecoveryRecipe)
#include "tst_recovery_recipe.moc"
