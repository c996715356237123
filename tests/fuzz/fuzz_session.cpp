// libFuzzer target: a session file (HDF5, docs/session-format.md) read back and summarised as `session FILE --json`
// does. libhdf5 is not instrumented; what is fuzzed is our reader's checks of every object's kind, type, shape and
// size before it is read, and the migration and summary code behind them.
#include "fuzz_support.h"

#include "session/session.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto path = mla::fuzz::writeScratchFile("session.h5", data, size);
    try {
        const mla::Session session = mla::loadSession(path);
        (void)mla::sessionSummaryJson(session).dump();
    } catch (const mla::Error&) {
    }
    return 0;
}
