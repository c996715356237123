// Batched test executables: the core and app tests of one folder link into one executable, compiled in unity batches
// (tests/CMakeLists.txt), because compiling each test file on its own, with its own copy of the precompiled headers
// and of every template it shares with its neighbours, was most of a CI build. Each tst_*.cpp keeps its QTEST_MAIN
// (or QTEST_GUILESS_MAIN, QTEST_APPLESS_MAIN) line: with this header first, that line registers the file's main under
// the file's name (tst_gguf.cpp: "gguf") instead of defining main(), and the executable's main (test_batch_main.cpp)
// runs the test named by its first argument with the rest of the command line, as if it were its own executable:
//   tst_core_formats gguf -functions
#pragma once

#include <QtTest>

namespace mla::test {

using BatchedTestMain = int (*)(int argc, char* argv[]);

struct BatchedTest {
    BatchedTest(const char* sourceFile, BatchedTestMain main);
};

} // namespace mla::test

// Qt's QTEST_MAIN_WRAPPER (qtest.h, Qt 6) with the function renamed and registered; the body is Qt's, so each test
// gets the same application object and set-up as a stand-alone Qt Test executable.
#undef QTEST_MAIN_WRAPPER
#define QTEST_MAIN_WRAPPER(TestObject, ...)                                                                            \
    static int mlaBatchedMain_##TestObject(int argc, char* argv[])                                                    \
    {                                                                                                                  \
        QT_PREPEND_NAMESPACE(QTest::Internal::callInitMain)<TestObject>();                                             \
        __VA_ARGS__                                                                                                    \
        TestObject tc;                                                                                                 \
        QTEST_SET_MAIN_SOURCE_PATH                                                                                     \
        return QTest::qExec(&tc, argc, argv);                                                                          \
    }                                                                                                                  \
    static const ::mla::test::BatchedTest mlaBatchedTest_##TestObject(__FILE__, &mlaBatchedMain_##TestObject);
