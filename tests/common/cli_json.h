#pragma once

#include "common/test_support.h"

#include <QtGlobal>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace mla::test {

// The CLI's --json output of a run that must succeed; a failed run stops the test executable with its stderr.
inline nlohmann::json runCliJson(const std::vector<std::string>& args)
{
    const ProcessResult r = runCli(args);
    if (r.exitCode != 0 || r.crashed)
        qFatal("CLI failed (%d): %s", r.exitCode, r.err.c_str());
    return nlohmann::json::parse(r.out);
}

} // namespace mla::test
