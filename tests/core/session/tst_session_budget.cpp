// A session's arrays are loaded only within a memory budget checked against each array's declared size before it is
// read, so a file whose compressed datasets expand to gigabytes is refused before anything is decompressed (the
// hostile-input suite's reproducer declares 2 GiB of calibration ids in 2 MiB of gzip chunks).
#include "session_test_support.h"

#include "model/model_loader.h"
#include "util/error.h"

using namespace mla;

class TestSessionBudget : public QObject {
    Q_OBJECT

private slots:
    void declaredSizesAreCheckedAgainstTheBudget();
};

void TestSessionBudget::declaredSizesAreCheckedAgainstTheBudget()
{
    const Model model = loadModel(test::realModelPath("stories260K"));
    const auto dir = test::scratchDir("session-budget");
    const auto file = dir / "s.h5";
    saveSession(test::analysedSession(model), file);
    const std::int64_t before = openHdf5Objects();
    // Enough for everything: loads.
    QVERIFY(!loadSession(file, std::uint64_t(64) << 20).analysis.layers.empty());
    // A budget smaller than the arrays: refused with the dataset and the budget named, no object left open.
    try {
        loadSession(file, 16384);
        QFAIL("a session larger than its budget was loaded");
    } catch (const Error& e) {
        const std::string what = e.what();
        QVERIFY2(what.find(file.string()) != std::string::npos && what.find("memory") != std::string::npos
                     && what.find("declares") != std::string::npos && what.find("16.0 KiB") != std::string::npos,
                 e.what());
    }
    QCOMPARE(openHdf5Objects(), before);
    // The default budget is the memory available now.
    QVERIFY(!loadSession(file).analysis.layers.empty());
}

QTEST_GUILESS_MAIN(TestSessionBudget)
#include "tst_session_budget.moc"
