// `mla-workbench-cli recover`: the flags are a contract (usage errors exit 2, bad values exit 1 with one message
// before any work), --print-command gives the recipe's command line for another machine, and a real run (PyTorch)
// prints the recipe's progress, one JSON object with --json, and writes a folder that `eval` measures with the same
// held-out KL the recipe reported.
#include "common/python_torch.h"
#include "common/test_support.h"

#include <QtTest>
#include <nlohmann/json.hpp>

#include <cmath>

using nlohmann::json;
using namespace mla;
namespace fs = std::filesystem;

class TestCliRecover : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        m_dir = test::scratchDir("cli_recover");
        m_teacher = test::modelsDir() / "stories260K-hf";
        m_student = m_dir / "student";
        const auto r = test::runCli({"convert", m_teacher.string(), "--out", m_student.string(), "--rope-strategy", "high",
                                     "--rope-pairs", "1", "--latent-dim", "8", "--quiet"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
    }

    void usageAndBadValues()
    {
        auto r = test::runCli({"recover", "--out", (m_dir / "x").string(), "--steps", "5", "--sample", "4"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("--student") != std::string::npos, r.err.c_str());
        r = test::runCli({"recover", "--student", m_student.string(), "--steps", "5", "--sample", "4"});
        QCOMPARE(r.exitCode, 2);
        r = test::runCli({"recover", "--student", m_student.string(), "--out", (m_dir / "x").string(), "--steps", "-3",
                          "--sample", "4", "--teacher", m_teacher.string()});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("--steps must be an integer >= 1") != std::string::npos, r.err.c_str());
        r = test::runCli({"recover", "--student", (m_dir / "no-such-export").string(), "--out", (m_dir / "x").string(),
                          "--steps", "5", "--sample", "4", "--teacher", m_teacher.string()});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("not an exported model folder") != std::string::npos, r.err.c_str());
        QVERIFY(!fs::exists(m_dir / "x"));
        r = test::runCli({"recover", "--student", m_student.string(), "--out", m_student.string(), "--steps", "5",
                          "--sample", "4", "--teacher", m_teacher.string(), "--force"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY(fs::is_regular_file(m_student / "config.json"));
    }

    void printCommand()
    {
        const auto r = test::runCli({"recover", "--student", m_student.string(), "--out", "/elsewhere/out", "--teacher",
                                     m_teacher.string(), "--steps", "1000", "--sample", "4096", "--lr", "1e-3",
                                     "--python", "python3", "--print-command"});
        QCOMPARE(r.exitCode, 0);
        const std::string expected = "python3 " + (m_student / "recovery" / "distill.py").string() + " --teacher "
                                     + m_teacher.string() + " --student " + m_student.string()
                                     + " --out /elsewhere/out --steps 1000 --sample 4096 --lr 1e-3\n";
        QCOMPARE(r.out, expected);
    }

    void recoverThenEvalAgree()
    {
        MLA_REQUIRE_TORCH();
        qputenv("MLA_PYTHON", test::pythonTorch().python.c_str());
        qputenv("OMP_NUM_THREADS", "1");
        const fs::path out = m_dir / "recovered";
        // Held-out ids sampled by the CLI from the teacher, so that `eval` measures exactly the recipe's held-out set.
        std::string ids;
        for (int i = 0; i < 4; ++i) {
            const auto g = test::runCli({"generate", m_teacher.string(), "--steps", "40", "--temperature", "1", "--top-p",
                                         "1", "--seed", std::to_string(100 + i), "--json"});
            QVERIFY2(g.exitCode == 0, g.err.c_str());
            const json j = json::parse(g.out);
            for (int id : j["prompt_ids"].get<std::vector<int>>())
                ids += std::to_string(id) + " ";
            for (int id : j["ids"].get<std::vector<int>>())
                ids += std::to_string(id) + " ";
            ids += "\n";
        }
        test::writeTextFile(m_dir / "heldout.txt", ids);
        const auto r = test::runCli({"recover", "--teacher", m_teacher.string(), "--student", m_student.string(), "--out",
                                     out.string(), "--steps", "8", "--sample", "24", "--seq-len", "48", "--batch", "8",
                                     "--lr", "3e-3", "--eval-ids", (m_dir / "heldout.txt").string(), "--json"},
                                    300000);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const json j = json::parse(r.out);
        for (const char* key : {"out", "kl_before", "kl_after", "tokens", "ppl_before", "ppl_after", "command", "seconds"})
            QVERIFY2(j.contains(key), key);
        QCOMPARE(j["teacher_written_first"].get<bool>(), false);
        QVERIFY(j["kl_after"].get<double>() < j["kl_before"].get<double>());

        const auto e = test::runCli({"eval", out.string(), "--reference", m_teacher.string(), "--ids",
                                     (m_dir / "heldout.txt").string(), "--json"});
        QVERIFY2(e.exitCode == 0, e.err.c_str());
        const json ej = json::parse(e.out);
        const double kl = ej["kl"].get<double>();
        qInfo("recover: KL %.5f -> %.5f; eval of the folder: %.5f", j["kl_before"].get<double>(),
              j["kl_after"].get<double>(), kl);
        QVERIFY2(std::abs(kl - j["kl_after"].get<double>()) <= 1e-4 * std::max(1.0, kl), e.out.c_str());
    }

private:
    fs::path m_dir, m_teacher, m_student;
};

QTEST_GUILESS_MAIN(TestCliRecover)
#include "tst_cli_recover.moc"
