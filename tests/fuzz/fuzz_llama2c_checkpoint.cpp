// libFuzzer target: a llama2.c checkpoint (.bin) through the one model loader, then one token through the engine.
// The seeds are tiny but complete checkpoints, so mutations of the 28-byte header meet a consistent file body.
#include "fuzz_support.h"

#include "model/model_loader.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto path = mla::fuzz::writeScratchFile("model.bin", data, size);
    try {
        mla::fuzz::exerciseModel(mla::loadModel(path));
    } catch (const mla::Error&) {
    }
    return 0;
}
