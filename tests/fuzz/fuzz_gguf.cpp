// libFuzzer target: GGUF. The container is parsed from memory first (metadata, arrays, tensor records, alignment);
// inputs that parse also go through the model loader (metadata -> config, tensor shapes), the embedded vocabulary's
// tokenizer and one token through the engine.
#include "fuzz_support.h"

#include "formats/gguf.h"
#include "model/model_loader.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const mla::GgufFile gguf = mla::GgufFile::parse(data, size, "fuzz.gguf", nullptr);
        for (const auto& info : gguf.tensors()) {
            if (const auto t = gguf.tensor(info.name); t && t->numel() > 0 && t->numel() < (1 << 20))
                (void)t->toFloats();
        }
    } catch (const mla::Error&) {
        return 0;
    }
    const auto path = mla::fuzz::writeScratchFile("model.gguf", data, size);
    try {
        const mla::Model model = mla::loadModel(path);
        if (model.embeddedVocabulary) {
            const auto tokenizer = mla::tokenizerFromEmbedded(*model.embeddedVocabulary, path);
            mla::fuzz::exerciseTokenizer(*tokenizer, "");
        }
        mla::fuzz::exerciseModel(model);
    } catch (const mla::Error&) {
    }
    return 0;
}
