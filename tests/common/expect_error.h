#pragma once

#include "util/error.h"

#include <QTest>

#include <string>

namespace mla::test {

// Runs `f` and checks that it throws an mla::Error whose message contains `needle` (a failure is reported in the
// calling test function, which goes on).
template <typename F>
void expectError(F&& f, const std::string& needle)
{
    try {
        f();
    } catch (const Error& e) {
        const std::string message = e.what();
        QVERIFY2(message.find(needle) != std::string::npos, message.c_str());
        return;
    }
    QFAIL(("no error containing: " + needle).c_str());
}

} // namespace mla::test
