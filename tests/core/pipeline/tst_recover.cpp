// pipeline::recover, what `recover` calls: every bad request fails before any work, naming the problem (nothing
// written, no Python started); with PyTorch, a short distillation from a llama2.c teacher (written as a Hugging Face
// folder first) lowers the held-out KL, the folder reloads, names the user's teacher, carries the output marker and
// may be replaced with force; a cancel in the middle stops the recipe and leaves nothing behind.
#include "common/python_torch.h"
#include "common/test_support.h"
#include "model/model_loader.h"
#include "pipeline/convert.h"
#include "pipeline/recover.h"
#include "util/error.h"
#include "util/output_safety.h"

#include <QtTest>

#include <atomic>
#include <cmath>

using namespace mla;
namespace fs = std::filesystem;

namespace {

void expectError(const pipeline::RecoveryRequest& request, const std::string& part)
{
    try {
        pipeline::recover(request, ExecutionContext());
        QFAIL(("no error; expected one saying: " + part).c_str());
    } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find(part) != std::string::npos, e.what());
    }
}

std::size_t entries(const fs::path& dir)
{
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir))
        ++n;
    return n;
}

} // namespace

class TestRecover : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        m_dir = test::scratchDir("recover");
        m_teacher = test::demoDir() / "stories260K.bin";
        m_student = m_dir / "student";
        const pipeline::OpenedModel opened = pipeline::openModel({m_teacher, std::nullopt, true}, ExecutionContext());
        Settings s;
        s.conversion.strategy = RopeStrategy::High;
        s.conversion.ropePairs = 1;
        s.conversion.latentDim = 8;
        pipeline::ExportRequest request;
        request.folder = m_student;
        pipeline::convertToFolder(opened, nullptr, s, request, std::nullopt, ExecutionContext());
        QVERIFY(fs::is_regular_file(m_student / "recovery" / "distill.py"));
    }

    void badRequestsFailBeforeAnyWork()
    {
        const fs::path out = m_dir / "bad-out";
        pipeline::RecoveryRequest r;
        r.teacher = m_teacher;
        r.student = m_student;
        r.out = out;
        r.recipeOptions = {{"steps", "10"}, {"sample", "8"}};

        pipeline::RecoveryRequest x = r;
        x.student = m_teacher;
        expectError(x, "not an exported model folder");
        x = r;
        x.teacher = m_dir / "no-such-teacher";
        expectError(x, "no such file or folder");
        x = r;
        x.recipeOptions = {{"sample", "8"}};
        expectError(x, "--steps");
        x = r;
        x.recipeOptions = {{"steps", "10"}};
        expectError(x, "training data is required");
        x = r;
        x.recipeOptions = {{"steps", "0"}, {"sample", "8"}};
        expectError(x, "--steps must be an integer >= 1");
        x = r;
        x.recipeOptions = {{"steps", "10"}, {"sample", "8"}, {"lr", "nan"}};
        expectError(x, "--lr must be a number");
        x = r;
        x.recipeOptions = {{"steps", "10"}, {"ids", (m_dir / "no-ids.txt").string()}};
        expectError(x, "no-ids.txt: not a readable file");
        x = r;
        x.recipeOptions = {{"steps", "10"}, {"sample", "8"}, {"not-an-option", "1"}};
        expectError(x, "unknown recipe option --not-an-option");
        x = r;
        x.recipeOptions = {{"steps", "10"}, {"sample", "8"}, {"grad-checkpoint", "yes"}};
        expectError(x, "takes no value");

        // The output policy: never into an input, a non-empty folder only with force and only when it is ours.
        x = r;
        x.out = m_student / "recovered";
        expectError(x, "");
        QVERIFY(!fs::exists(m_student / "recovered"));
        fs::create_directories(m_dir / "users");
        test::writeTextFile(m_dir / "users" / "notes.txt", "mine");
        x = r;
        x.out = m_dir / "users";
        expectError(x, "users");
        x.force = true;
        expectError(x, "users");
        QCOMPARE(test::readTextFile(m_dir / "users" / "notes.txt"), std::string("mine"));

        // A Python that does not exist: the error says so and gives the command to run elsewhere.
        x = r;
        x.python = (m_dir / "no-python").string();
        expectError(x, "no Python with PyTorch");
        expectError(x, "distill.py --teacher");
        QVERIFY(!fs::exists(out));
    }

    void commandForAnotherMachine()
    {
        pipeline::RecoveryRequest r;
        r.teacher = "/data/original";
        r.student = "/data/mla";
        r.out = "/data/recovered";
        r.python = "python3";
        r.recipeOptions = {{"steps", "1000"}, {"sample", "4096"}, {"grad-checkpoint", ""}};
        const std::vector<std::string> expected = {"python3", "/data/mla/recovery/distill.py", "--teacher", "/data/original",
                                                   "--student", "/data/mla", "--out", "/data/recovered", "--steps", "1000",
                                                   "--sample", "4096", "--grad-checkpoint"};
        QCOMPARE(pipeline::recoveryCommand(r), expected);
    }

    void shortRecoveryFromALlama2cTeacher()
    {
        MLA_REQUIRE_TORCH();
        qputenv("MLA_PYTHON", test::pythonTorch().python.c_str());
        qputenv("OMP_NUM_THREADS", "1");
        const fs::path out = m_dir / "recovered";
        pipeline::RecoveryRequest r;
        r.teacher = m_teacher;
        r.student = m_student;
        r.out = out;
        r.recipeOptions = {{"steps", "12"}, {"sample", "32"}, {"seq-len", "48"}, {"batch", "8"}, {"lr", "3e-3"},
                           {"eval-sequences", "8"}, {"log-every", "4"}};
        std::vector<double> fractions;
        std::vector<std::string> stages;
        const JobControl job(nullptr, [&](double f, const std::string& stage) {
            fractions.push_back(f);
            stages.push_back(stage);
        });
        const pipeline::RecoveryOutcome outcome = pipeline::recover(r, ExecutionContext(nullptr, job));
        qInfo("held-out KL %.4f -> %.4f in %.1f s (PyTorch %s)", outcome.summary["kl_before"].get<double>(),
              outcome.summary["kl_after"].get<double>(), outcome.seconds, outcome.torchVersion.c_str());
        QVERIFY(outcome.teacherWrittenFirst);
        QVERIFY(outcome.summary["kl_after"].get<double>() < 0.9 * outcome.summary["kl_before"].get<double>());
        QCOMPARE(outcome.summary["tokens"].get<long long>(), 12LL * 8 * 48);
        // Progress never goes back, reaches the end, and shows the recipe's own step lines.
        for (std::size_t i = 1; i < fractions.size(); ++i)
            QVERIFY2(fractions[i] >= fractions[i - 1] - 1e-12, stages[i].c_str());
        QCOMPARE(fractions.back(), 1.0);
        QVERIFY(std::any_of(stages.begin(), stages.end(), [](const std::string& s) { return s.rfind("step 12/12 ", 0) == 0; }));

        // The folder: reloads as an MLA model, names the user's teacher (not the temporary folder), carries our marker.
        {
            const Model reloaded = loadModel(out);
            QVERIFY(reloaded.config.mla.has_value());
        } // unmapped: a folder whose weights this process maps counts as an input and is never replaced
        const std::string card = test::readTextFile(out / "README.md");
        QVERIFY2(card.find(fs::absolute(m_teacher).string()) != std::string::npos, card.c_str());
        QVERIFY(card.find("mla-teacher-") == std::string::npos);
        QVERIFY(test::readTextFile(out / "recovery.json").find("mla-teacher-") == std::string::npos);
        QVERIFY(fs::is_regular_file(out / kOutputMarkerName));
        QVERIFY(inspectOutputFolder(out).allowed(true));
        QVERIFY(!inspectOutputFolder(out).allowed(false));
    }

    void cancelInTheMiddleLeavesNothing()
    {
        MLA_REQUIRE_TORCH();
        qputenv("MLA_PYTHON", test::pythonTorch().python.c_str());
        const fs::path parent = m_dir / "cancel";
        fs::create_directories(parent);
        pipeline::RecoveryRequest r;
        r.teacher = m_teacher;
        r.student = m_student;
        r.out = parent / "recovered";
        r.recipeOptions = {{"steps", "100000"}, {"sample", "16"}, {"seq-len", "32"}, {"batch", "4"}, {"log-every", "1"}};
        std::atomic<bool> cancel{false};
        const JobControl job(&cancel, [&](double, const std::string& stage) {
            if (stage.rfind("step 2/", 0) == 0)
                cancel = true;
        });
        bool cancelled = false;
        try {
            pipeline::recover(r, ExecutionContext(nullptr, job));
        } catch (const Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QCOMPARE(entries(parent), std::size_t(0)); // neither the folder nor the recipe's staging beside it
    }

private:
    fs::path m_dir, m_teacher, m_student;
};

QTEST_GUILESS_MAIN(TestRecover)
#include "tst_recover.moc"
